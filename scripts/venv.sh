# Sourced by .ci/run and run_local.sh: activates the project's virtual environment, building
# it from requirements.txt when it is missing or half-built, and installs the project into it.
# The environment is cached per hash of requirements.txt (override with BEAM_CASCADE_VENV).
key=$(sha256sum requirements.txt | cut -c1-16)
venv="${BEAM_CASCADE_VENV:-$HOME/.cache/beam-cascade/venv-$key}"
if [ ! -f "$venv/.complete" ]; then
  echo "== building the virtual environment in $venv (first time: several minutes)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r requirements.txt
  touch "$venv/.complete"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
pip install -q --no-deps -e .
