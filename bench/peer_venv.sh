# Sourced by bench: prints the path of the peer's Python, building its virtual environment
# on first use. It layers bench/requirements-peer.txt over the project's environment (which
# must be active): its own site-packages come first on sys.path, the project's after, so
# torch and apache-beam are shared rather than downloaded twice.
peer_key=$(cat requirements.txt bench/requirements-peer.txt | sha256sum | cut -c1-16)
peer_venv="${BEAM_CASCADE_PEER_VENV:-$HOME/.cache/beam-cascade/peer-venv-$peer_key}"
if [ ! -f "$peer_venv/.complete" ]; then
  echo "== building the benchmark peer's environment in $peer_venv (first time: minutes)" >&2
  rm -rf "$peer_venv"
  python3 -m venv "$peer_venv"
  "$peer_venv/bin/pip" install -q -r bench/requirements-peer.txt >&2 || return 1
  project_site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  peer_site=$("$peer_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$project_site" > "$peer_site/zz-beam-cascade-project.pth"
  touch "$peer_venv/.complete"
fi
peer_python="$peer_venv/bin/python"
