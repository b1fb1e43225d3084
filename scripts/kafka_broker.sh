#!/usr/bin/env bash
# Builds a Kafka broker from Maven Central and prints its jar's path: for the Kafka test and
# benchmark, and to try the Kafka source without a cluster. A single-node broker (KRaft):
#   JAR=$(scripts/kafka_broker.sh)
#   java -cp "$JAR" kafka.tools.StorageTool format -t "$(java -cp "$JAR" kafka.tools.StorageTool random-uuid)" -c server.properties
#   java -jar "$JAR" server.properties
# and messages in with `java -cp "$JAR" kafka.tools.ConsoleProducer --bootstrap-server ... --topic T`.
#
# Environment:
#   KAFKA_VERSION      Kafka version (default 3.9.1)
#   BEAM_CASCADE_CACHE cache root (default ~/.cache/beam-cascade)
set -euo pipefail
KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
JAR="${BEAM_CASCADE_CACHE:-$HOME/.cache/beam-cascade}/kafka-broker/kafka-$KAFKA_VERSION/broker.jar"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/classpath_jar.sh
source "$here/classpath_jar.sh"
classpath_jar "$JAR" "Kafka $KAFKA_VERSION (about 50 MB)" "$here/kafka/broker/pom.xml" \
  kafka.Kafka "" -Dkafka.version="$KAFKA_VERSION"
