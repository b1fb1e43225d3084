"""The cascade in this process, without Beam: for notebooks and quick checks.

    from pipeline.predict import Predictor
    predictor = Predictor.from_config("cascade.yaml")   # loads the tiers once
    for answer in predictor.predict(["a gripping film", "dull"]):
        print(answer.label, answer.decided_by, [(v.tier, v.confidence) for v in answer.tiers])

and on the command line: `beam-cascade predict --config cascade.yaml "some text" ...`, which
prints each tier's answer and confidence. Each text goes through the tiers as in a job: a
tier keeps it when its confidence reaches the tier's threshold (models/routing_rule.py).
A window's budget (max_escalation_rate, max_disagreement) needs a window of records and
does not apply.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence

from models.config import CascadeConfig, ConfigError, validate_models
from models.routing_rule import decides
from pipeline.config import load_config
from transforms.records import Visit


@dataclass(frozen=True)
class Answer:
    """A text's label, from the tier that decided it, with every visited tier's visit."""

    text: str
    label: str
    confidence: float
    decided_by: str
    tiers: tuple[Visit, ...]


class Predictor:
    """A cascade's tiers loaded in this process, ready to classify lists of texts."""

    def __init__(self, config: CascadeConfig):
        # the scoring (torch, and Beam's RunInference module it lives beside) loads with the
        # tiers, not when the command starts: `beam-cascade predict --help` answers at once
        from transforms.scoring import tier_visits
        self.config = config
        self.labels = validate_models(config)
        self.models = [tier.load() for tier in config.tiers]
        self.routers = [tier.load_router() for tier in config.tiers]
        self._tier_visits = tier_visits

    @classmethod
    def from_config(cls, path: str) -> "Predictor":
        return cls(load_config(path))

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None
                ) -> list[Answer]:
        """Each text's answer; a text goes on to the next tier while the rule says so."""
        visits: list[list[Visit]] = [[] for _ in texts]
        pending = list(range(len(texts)))
        for tier, model, router in zip(self.config.tiers, self.models, self.routers):
            if not pending:
                break
            scored = self._tier_visits(tier, model, [texts[i] for i in pending],
                                       [text_pairs[i] for i in pending] if text_pairs else None,
                                       router)
            for i, visit in zip(pending, scored):
                visits[i].append(visit)
            pending = [i for i, visit in zip(pending, scored)
                       if not decides(visit.confidence, tier.threshold)]
        return [Answer(text, self.labels[v[-1].label_id], v[-1].confidence, v[-1].tier,
                       tuple(v)) for text, v in zip(texts, visits)]


def predict(texts: Sequence[str], config: str) -> list[Answer]:
    """Classifies `texts` with the cascade of the config file `config` (loads it each call:
    keep a Predictor to classify many lists)."""
    return Predictor.from_config(config).predict(texts)


def format_answers(answers: Sequence[Answer], predictor: Predictor) -> str:
    """One block per text: its label and, for every tier visited, the tier's answer."""
    lines = []
    for answer in answers:
        lines.append(f"{answer.text!r}: {answer.label} (decided by {answer.decided_by}, "
                     f"confidence {answer.confidence:.4f})")
        for tier, visit in zip(predictor.config.tiers, answer.tiers):
            threshold = "decides all" if tier.threshold is None else f"threshold {tier.threshold:g}"
            lines.append(f"  {visit.tier:<12}{predictor.labels[visit.label_id]:<12}"
                         f"confidence {visit.confidence:.4f} ({threshold})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: prints each text's answer and every visited tier's; exit 2 on a bad config."""
    p = argparse.ArgumentParser(prog="beam-cascade predict",
                                description="Classify texts given on the command line with a "
                                            "cascade, printing each tier's answer.")
    p.add_argument("--config", required=True, help="cascade config (YAML/JSON)")
    p.add_argument("texts", nargs="+", help="texts to classify")
    args = p.parse_args(argv)
    try:
        predictor = Predictor.from_config(args.config)
    except (ConfigError, ValueError, OSError) as e:
        print(f"beam-cascade predict: error: {e}", file=sys.stderr)
        return 2
    print(format_answers(predictor.predict(args.texts), predictor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
