"""Command-line options of `beam-cascade run`, as Beam PipelineOptions.

Being PipelineOptions, they parse alongside every standard Beam option (`--runner`,
`--direct_num_workers`, `--temp_location`, ...) and travel with the job to the workers.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.io import INPUT_FORMATS, OUTPUT_FORMATS


def _thresholds(value: str) -> list[float]:
    return [float(v) for v in value.split(",")]


class CascadeOptions(PipelineOptions):
    """Where to read and write, and which cascade to run (a config file or tier flags)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--input", action="append", default=None,
            help="input file or glob (Parquet or JSON Lines, optionally .gz); repeatable")
        parser.add_argument(
            "--input_format", choices=INPUT_FORMATS, default=None,
            help="format of every input file, when it cannot be told from the file names")
        parser.add_argument("--output", default=None,
                            help="output folder (any Beam filesystem path)")
        parser.add_argument(
            "--output_format", choices=OUTPUT_FORMATS, default=None,
            help="predictions format; default: the --output name's extension, else parquet")
        parser.add_argument("--config", default=None,
                            help="cascade config, YAML or JSON (see README)")
        for k in (1, 2, 3):
            parser.add_argument(f"--tier{k}", default=None,
                                help=f"checkpoint folder of tier {k}, instead of --config")
        parser.add_argument(
            "--threshold", type=_thresholds, default=None,
            help="with --tierN flags: confidence threshold of every tier but the last, or a "
                 "comma list, one per tier")
        for field in ("text_field", "id_field", "label_field", "text_pair_field"):
            parser.add_argument(f"--{field}", default=None,
                                help=f"overrides the config's {field}")
        parser.add_argument(
            "--passthrough_fields", default=None,
            help="comma list of input fields copied to the output; overrides the config")
