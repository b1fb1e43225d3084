"""The models/ cascade config and routing statistics the job studies write and read, under
the bench's names: a config as the dict a job's config file holds, a tier's entry in it, and
the statistics a job reports."""
from __future__ import annotations

from models.config import CascadeConfig, TierConfig, config_to_dict
from models.routing_stats import RoutingStats, ThresholdRange

__all__ = ["CascadeConfig", "RoutingStats", "ThresholdRange", "TierConfig", "config_to_dict"]
