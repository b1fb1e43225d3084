# Sourced by .ci/run and run_local.sh: activates the project's virtual environment, building
# it from requirements.txt when it is missing or half-built, and installs the project into it.
# The environment is cached per hash of requirements.txt (override with BEAM_CASCADE_VENV).
key=$(sha256sum requirements.txt | cut -c1-16)
venv="${BEAM_CASCADE_VENV:-$HOME/.cache/beam-cascade/venv-$key}"
# It is marked complete only once every install succeeded, so a failed or interrupted build
# (a network failure mid-install) is rebuilt next time instead of being used half-built.
if [ ! -f "$venv/.complete" ]; then
  echo "== building the virtual environment in $venv (first time: several minutes)"
  rm -rf "$venv"
  if python3 -m venv "$venv" && "$venv/bin/pip" install -q --upgrade pip \
      && "$venv/bin/pip" install -q -r requirements.txt; then
    touch "$venv/.complete"
  else
    echo "== building $venv failed (pip's message is above); fix the cause and run again:" \
         "it is rebuilt from scratch" >&2
    return 1 2>/dev/null || exit 1
  fi
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
pip install -q --no-deps -e .
