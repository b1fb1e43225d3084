#!/usr/bin/env bash
# Builds Beam's Prism runner with Go into a cache and prints the binary's path:
#   beam-cascade run --streaming --runner PrismRunner --prism_location "$(scripts/prism.sh)" ...
#
# Prism is Beam's local portable runner and the one that runs this job's streaming graph on
# one machine (the Python DirectRunner cannot run MatchContinuously's splittable DoFn). Beam
# would download Prism's binary from GitHub on first use; where that is blocked, `go install`
# builds the same command from the Go module proxy (about 2 minutes the first time).
#
# Environment:
#   BEAM_GO_VERSION    Beam version of Prism (default: the installed apache-beam's)
#   BEAM_CASCADE_CACHE cache root (default ~/.cache/beam-cascade)
set -euo pipefail
PYTHON="${PYTHON:-python}"
VERSION="${BEAM_GO_VERSION:-$("$PYTHON" -c 'import apache_beam; print(apache_beam.__version__)')}"
BIN_DIR="${BEAM_CASCADE_CACHE:-$HOME/.cache/beam-cascade}/prism/$VERSION"
if [[ -x "$BIN_DIR/prism" ]]; then
  echo "$BIN_DIR/prism"
  exit 0
fi
command -v go >/dev/null || { echo "prism.sh: go not found; install Go (1.22 or newer)" >&2; exit 1; }
mkdir -p "${BIN_DIR%/*}"
staging="$(mktemp -d "${BIN_DIR%/*}/.staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
GOBIN="$staging" go install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$VERSION" >&2
mkdir -p "$BIN_DIR"
mv "$staging/prism" "$BIN_DIR/prism"
echo "$BIN_DIR/prism"
