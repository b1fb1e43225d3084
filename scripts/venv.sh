# Sourced by run_tests.sh and run_local.sh: activates the virtual environment of the
# project's dependencies, building it from requirements.txt when it is missing or half-built,
# and puts this checkout's code and commands first.
#
# The environment is cached per hash of requirements.txt (override with BEAM_CASCADE_VENV) and
# shared by every checkout on the machine, so the project itself is not installed into it (two
# clones would share one install, and one would silently run the other's code): this
# checkout goes first on PYTHONPATH (Beam's worker processes inherit it), and its commands
# are two-line scripts in .bin/, first on PATH.
checkout=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
key=$(sha256sum "$checkout/requirements.txt" | cut -c1-16)
venv="${BEAM_CASCADE_VENV:-$HOME/.cache/beam-cascade/venv-$key}"
# It is marked complete only once every install succeeded, so a failed or interrupted build
# (a network failure mid-install) is rebuilt next time instead of being used half-built.
# Two shells (or CI jobs) on one machine build it one after the other: the second waits on
# the lock and then finds it complete, instead of deleting the first one's half-built copy.
if [ ! -f "$venv/.complete" ]; then
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
  if [ ! -f "$venv/.complete" ]; then
    echo "== building the virtual environment in $venv (first time: several minutes)"
    rm -rf "$venv"
    if python3 -m venv "$venv" && "$venv/bin/pip" install -q --upgrade pip \
        && "$venv/bin/pip" install -q -r "$checkout/requirements.txt"; then
      touch "$venv/.complete"
    else
      echo "== building $venv failed (pip's message is above); fix the cause and run again:" \
           "it is rebuilt from scratch" >&2
      exec 9>&-
      return 1 2>/dev/null || exit 1
    fi
  fi
  exec 9>&-
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
if compgen -G "$venv/lib/python*/site-packages/__editable__*beam_cascade*" > /dev/null; then
  pip uninstall -q -y beam-cascade  # installed there by an earlier version of this script
fi
export PYTHONPATH="$checkout${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$checkout/.bin"
for command in beam-cascade:pipeline.cli beam-cascade-java-harness:pipeline.java_harness; do
  printf '#!/bin/sh\nexec "%s" -m %s "$@"\n' "$venv/bin/python" "${command#*:}" \
    > "$checkout/.bin/${command%%:*}"
  chmod +x "$checkout/.bin/${command%%:*}"
done
export PATH="$checkout/.bin:$PATH"
