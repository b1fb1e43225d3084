"""The models/ guarantee the guarantee studies measure, under the bench's names: the search
for thresholds whose accuracy drop is bounded with a confidence, the thresholds it tries, the
design of the label requests it sends a labeller, and the records bound on their answers."""
from __future__ import annotations

from models.guarantee import (THRESHOLD_SEQUENCE, GuaranteeSearch, disagreement_entries,
                              guarantee_search)
from models.label_requests import new_design, record_key
from models.records_bound import EVIDENCE, AnsweredRequests

__all__ = ["EVIDENCE", "THRESHOLD_SEQUENCE", "AnsweredRequests", "GuaranteeSearch",
           "disagreement_entries", "guarantee_search", "new_design", "record_key"]
