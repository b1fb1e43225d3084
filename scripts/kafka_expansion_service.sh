#!/usr/bin/env bash
# Builds a Beam Java expansion service for the Kafka source, whose Java transforms run as local
# processes (no Docker), and prints its jar's path:
#   beam-cascade run --streaming --runner PrismRunner --prism_location "$(scripts/prism.sh)" \
#     --kafka_bootstrap_servers host:9092 --kafka_topic T \
#     --kafka_expansion_jar "$(scripts/kafka_expansion_service.sh)" ...
#
# Without --kafka_expansion_jar, Beam downloads its own expansion service jar and runs the
# Kafka source in Beam's Java SDK Docker image: right on Dataflow, or Flink with Docker.
# This one bundles the Java SDK harness, which pipeline/java_harness.py starts per worker.
#
# Environment:
#   BEAM_JAVA_VERSION  Beam version of the Java side (default 2.73.0: the Python SDK's Kafka
#                      configuration needs 2.73 or newer, and 2.73.0 is the newest whose jars
#                      all resolve on the Maven Central mirror here)
#   BEAM_CASCADE_CACHE cache root (default ~/.cache/beam-cascade)
set -euo pipefail
BEAM_JAVA_VERSION="${BEAM_JAVA_VERSION:-2.73.0}"
JAR="${BEAM_CASCADE_CACHE:-$HOME/.cache/beam-cascade}/kafka-expansion-service/beam-$BEAM_JAVA_VERSION/expansion-service.jar"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/classpath_jar.sh
source "$here/classpath_jar.sh"
classpath_jar "$JAR" "Beam $BEAM_JAVA_VERSION's Kafka IO (about 140 MB)" \
  "$here/kafka/expansion-service/pom.xml" org.apache.beam.sdk.expansion.service.ExpansionService \
  "" -Dbeam.version="$BEAM_JAVA_VERSION"
