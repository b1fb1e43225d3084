#!/usr/bin/env bash
# The test suite in one command, from a fresh clone: builds (once, then cached) the virtual
# environment and the runners some tests start (Beam's Flink job server for
# tests/test_flink.py; Prism, a Kafka broker and the Kafka expansion service for
# tests/test_streaming.py), then runs pytest. Extra arguments go to pytest (e.g. -k parsing).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
echo "== runners the tests start"
scripts/flink_job_server.sh
scripts/prism.sh
scripts/kafka_broker.sh
scripts/kafka_expansion_service.sh
echo "== tests"
python -m pytest -q tests "$@"
