#!/usr/bin/env bash
# Builds Beam's Flink job server from Maven Central into a cache and prints the jar's path:
#   beam-cascade run --runner FlinkRunner --flink_job_server_jar "$(scripts/flink_job_server.sh)" ...
#
# The jar is Beam's own FlinkJobServerDriver: a manifest whose class path lists the Flink
# runner and its dependencies, resolved by Maven (scripts/flink/pom.xml). Beam publishes a
# ready-made shaded `beam-runners-flink-<flink>-job-server` jar too, but the Maven Central
# mirror reachable here holds only the runner's own artifacts, so the script assembles the
# same job server from those; it works unchanged against the real Maven Central.
#
# Versions (environment):
#   FLINK_VERSION      Flink minor version of the runner (default 1.19)
#   BEAM_JAVA_VERSION  Beam version of the Java job server (default 2.62.0, the newest whose
#                      dependencies all resolve on the mirror here; the Python SDK talks to it
#                      through Beam's portable job and Fn APIs, checked with SDK 2.77.0)
#   BEAM_CASCADE_CACHE cache root (default ~/.cache/beam-cascade)
set -euo pipefail
FLINK_VERSION="${FLINK_VERSION:-1.19}"
BEAM_JAVA_VERSION="${BEAM_JAVA_VERSION:-2.62.0}"
CACHE="${BEAM_CASCADE_CACHE:-$HOME/.cache/beam-cascade}/flink-job-server/flink-$FLINK_VERSION-beam-$BEAM_JAVA_VERSION"
JAR="$CACHE/job-server.jar"
# Flink serialises JDK classes by reflection (Kryo); Java 17 allows it only for packages
# opened to it, as Flink's own launch scripts do with --add-opens.
ADD_OPENS="Add-Opens: java.base/java.lang java.base/java.lang.invoke java.base/java.lang.reflect java.base/java.io java.base/java.math java.base/java.net java.base/java.nio java.base/java.text java.base/java.time java.base/java.util java.base/java.util.concurrent java.base/java.util.concurrent.atomic java.base/java.util.concurrent.locks java.base/sun.nio.ch"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/classpath_jar.sh
source "$here/classpath_jar.sh"
classpath_jar "$JAR" "Beam $BEAM_JAVA_VERSION's Flink $FLINK_VERSION runner (about 150 MB)" \
  "$here/flink/pom.xml" org.apache.beam.runners.flink.FlinkJobServerDriver "$ADD_OPENS" \
  -Dbeam.version="$BEAM_JAVA_VERSION" -Dflink.version="$FLINK_VERSION"
