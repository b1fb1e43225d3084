"""A PTransform applied to a NamedTuple of PCollections some of which may be absent.

Steps with several inputs or outputs hand over typed NamedTuples, as Beam's RunInference
does (RunInferenceDLQ); a field the job has no PCollection for (the audits of a cascade
without audit_rate, the running statistics of a batch job) is None. Beam takes only
PCollections as a transform's inputs, so a transform applied to such a tuple leaves the
absent ones out.
"""
from __future__ import annotations

from typing import Any

import apache_beam as beam


class TakesOptionalInputs(beam.PTransform):
    """A PTransform whose input (a NamedTuple of PCollections) may hold None."""

    def _extract_input_pvalues(self, pvalueish: Any) -> tuple[Any, dict[str, Any]]:
        pvalueish, inputs = super()._extract_input_pvalues(pvalueish)
        return pvalueish, {tag: pcoll for tag, pcoll in inputs.items() if pcoll is not None}
