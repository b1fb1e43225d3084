# Sourced by the scripts that build Java programs from Maven Central (flink_job_server.sh,
# kafka_broker.sh, kafka_expansion_service.sh):
#
#   classpath_jar JAR WHAT POM MAIN_CLASS EXTRA_MANIFEST_LINE [MAVEN_ARGS...]
#
# resolves POM's runtime dependencies with Maven into JAR's folder (lib/) and writes JAR: a
# manifest-only jar whose Class-Path lists them, so `java -jar JAR` runs MAIN_CLASS and
# `java -cp JAR OTHER_CLASS` any other class of the program. Then prints JAR. Builds only if
# JAR is missing (saying WHAT it resolves); the folder appears whole (built aside, then
# renamed), so a concurrent build never sees half.
classpath_jar() {
  local jar="$1" what="$2" pom="$3" main="$4" extra="$5"
  shift 5
  if [[ -f "$jar" ]]; then
    echo "$jar"
    return 0
  fi
  echo "$(basename "$0"): resolving $what with Maven (once)" >&2
  local tool
  for tool in java mvn; do
    command -v "$tool" >/dev/null || { echo "$tool not found; install a JDK (17) and Maven" >&2; return 1; }
  done
  local folder building lib
  folder="$(dirname "$jar")"
  mkdir -p "$(dirname "$folder")"
  building="$(mktemp -d "$(dirname "$folder")/.building-XXXXXX")"
  if ! mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$building/lib" "$@" >&2; then
    rm -rf "$building"
    return 1
  fi
  {
    echo "Main-Class: $main"
    [[ -z "$extra" ]] || echo "$extra"
    printf "Class-Path:"
    # Manifest continuation lines start with one space; the second separates the entries.
    for lib in "$building"/lib/*.jar; do printf "  lib/%s\n" "$(basename "$lib")"; done
  } > "$building/manifest.txt"
  mkdir "$building/empty"
  (cd "$building" && jar cfm "$(basename "$jar")" manifest.txt -C empty .) || { rm -rf "$building"; return 1; }
  rm -rf "$building/empty" "$building/manifest.txt"
  mv -T "$building" "$folder" 2>/dev/null || rm -rf "$building"
  echo "$jar"
}
