"""Beam's Java SDK harness as a local process, for the Kafka source without Docker.

Beam's Kafka source is Java. Its expansion service assigns it an environment; by default
Beam's Java SDK Docker image, which Dataflow (and Flink with Docker) start. Where there is
no Docker, a PROCESS environment makes the runner start a command per worker instead: this
module is that command (`beam-cascade-java-harness`). It does what the Docker image's boot
program does: asks the runner's provision service for the worker's endpoints and pipeline
options, then runs the Java harness (`org.apache.beam.fn.harness.FnHarness`) from the jar
that scripts/kafka_expansion_service.sh builds, which also holds the harness.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys

COMMAND = "beam-cascade-java-harness"
CLASSPATH_VARIABLE = "BEAM_CASCADE_JAVA_CLASSPATH"
HARNESS_CLASS = "org.apache.beam.fn.harness.FnHarness"


def process_environment_args(expansion_jar: str) -> list[str]:
    """Expansion service flags that put its Java transforms in a local-process environment
    running the harness from `expansion_jar`."""
    command = shutil.which(COMMAND) or os.path.join(os.path.dirname(sys.executable), COMMAND)
    if not os.path.exists(command):
        raise FileNotFoundError(f"{COMMAND} not found on PATH: `source scripts/venv.sh` puts "
                                "this checkout's commands there (or pip install -e . in the "
                                "environment that runs the job)")
    config = {"command": command, "env": {CLASSPATH_VARIABLE: os.path.abspath(expansion_jar)}}
    return ["--defaultEnvironmentType=PROCESS", f"--defaultEnvironmentConfig={json.dumps(config)}"]


def harness_environment(worker_id: str, provision_endpoint: str) -> dict[str, str]:
    """The variables FnHarness reads, from the runner's provision service."""
    import grpc
    from google.protobuf import json_format, text_format
    from apache_beam.portability.api import (beam_provision_api_pb2, beam_provision_api_pb2_grpc,
                                             endpoints_pb2)

    with grpc.insecure_channel(provision_endpoint) as channel:
        info = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel).GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(),
            metadata=[("worker_id", worker_id)]).info

    def descriptor(url: str) -> str:
        return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url),
                                           as_one_line=True)

    return {"HARNESS_ID": worker_id,
            "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
            "LOGGING_API_SERVICE_DESCRIPTOR": descriptor(info.logging_endpoint.url),
            "CONTROL_API_SERVICE_DESCRIPTOR": descriptor(info.control_endpoint.url),
            "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities)}


def java_command(classpath: str) -> list[str]:
    """java with the harness jar; jamm (in the jar's lib/) as the agent the harness expects."""
    agents = glob.glob(os.path.join(os.path.dirname(classpath), "lib", "jamm-*.jar"))
    return (["java"] + [f"-javaagent:{agent}" for agent in agents[:1]]
            + ["-cp", classpath, HARNESS_CLASS])


def main(argv: list[str] | None = None) -> None:
    """Called by the runner with --id and --provision_endpoint (others are ignored)."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--id", required=True)
    parser.add_argument("--provision_endpoint", required=True)
    args, _ = parser.parse_known_args(argv)
    classpath = os.environ.get(CLASSPATH_VARIABLE)
    if not classpath:
        sys.exit(f"{COMMAND}: {CLASSPATH_VARIABLE} is not set; it is started by a runner, "
                 "through the expansion service of --kafka_expansion_jar")
    worker_id = args.id.strip("'")  # Prism passes --id='<id>', quotes included
    env = {**os.environ, **harness_environment(worker_id, args.provision_endpoint)}
    command = java_command(classpath)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
