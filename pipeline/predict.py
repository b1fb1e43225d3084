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

A text the job would dead-letter (empty or invisible, not a string, an unpaired surrogate:
models/text_checks.py, the check `run` applies) is refused, not answered: `Predictor.predict`
raises RefusedTexts naming each one, and the command answers the other texts, prints one
line per refused text on stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from models.config import CascadeConfig, ConfigError, TierConfig
from models.routing_rule import decides
from models.text_checks import InvalidRecord, checked_text
from models.validation import validate_models
from pipeline.config import load_config
from transforms.records import Visit

if TYPE_CHECKING:  # they load torch, which loads with the tiers
    from models.learned_deferral import Router
    from models.tier import Tier


@dataclass(frozen=True)
class Answer:
    """A text's label, from the tier that decided it, with every visited tier's visit."""

    text: str
    label: str
    confidence: float
    decided_by: str
    tiers: tuple[Visit, ...]


class RefusedTexts(ValueError):
    """Texts `run` would dead-letter; `refusals` maps each one's index to the reason."""

    def __init__(self, refusals: dict[int, str], argument: str = "texts"):
        self.refusals = refusals
        super().__init__(f"{len(refusals)} text(s) cannot be classified, as `run` would "
                         "dead-letter them: " + "; ".join(
                             f"{argument}[{i}]: {reason}" for i, reason in refusals.items()))


def refusal_reasons(texts: Sequence, field: str = "text") -> dict[int, str]:
    """Why each text `run` would dead-letter cannot be classified, by index (models/
    text_checks.py: the job's own check)."""
    found = {}
    for i, text in enumerate(texts):
        try:
            checked_text(text, field)
        except InvalidRecord as e:
            found[i] = str(e)
    return found


def check_texts(texts: Sequence, text_pairs: Sequence | None = None) -> None:
    """Raises RefusedTexts when a text or pair is one `run` would dead-letter."""
    for argument, field, values in (("texts", "text", texts),
                                    ("text_pairs", "text_pair", text_pairs or ())):
        if found := refusal_reasons(values, field):
            raise RefusedTexts(found, argument)


class Predictor:
    """A cascade's tiers loaded in this process, ready to classify lists of texts."""

    def __init__(self, config: CascadeConfig):
        self.config = config
        self.labels = validate_models(config)
        # torch loads with the tiers, not when the command starts: `predict --help` answers at once
        from models.loading import load_configured_router, load_configured_tier
        self.models = [load_configured_tier(tier) for tier in config.tiers]
        self.routers = [load_configured_router(tier) for tier in config.tiers]

    @classmethod
    def from_config(cls, path: str) -> "Predictor":
        return cls(load_config(path))

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None
                ) -> list[Answer]:
        """Each text's answer; a text goes on to the next tier while the rule says so.

        Raises RefusedTexts (a ValueError naming every refused index and its reason) before
        any tier runs when a text or pair is one `run` would dead-letter: a list is answered
        whole or not at all, so answers never shift against their texts. Drop the indices in
        the exception's `refusals` and call again to answer the rest."""
        check_texts(texts, text_pairs)
        visits: list[list[Visit]] = [[] for _ in texts]
        pending = list(range(len(texts)))
        for tier, model, router in zip(self.config.tiers, self.models, self.routers):
            if not pending:
                break
            scored = _visits(tier, model, [texts[i] for i in pending],
                             [text_pairs[i] for i in pending] if text_pairs else None, router)
            for i, visit in zip(pending, scored):
                visits[i].append(visit)
            pending = [i for i, visit in zip(pending, scored)
                       if not decides(visit.confidence, tier.threshold)]
        return [Answer(text, self.labels[v[-1].label_id], v[-1].confidence, v[-1].tier,
                       tuple(v)) for text, v in zip(texts, visits)]


def _visits(tier: TierConfig, model: Tier, texts: list[str], text_pairs: list[str] | None,
            router: Router | None) -> list[Visit]:
    """One tier's visits of the texts, scored as the job's RunInference step scores them."""
    # torch loads with the tiers, not when the command starts: `predict --help` answers at once
    from models.tier_scoring import score_texts
    return [Visit(**scored._asdict())
            for scored in score_texts(tier, model, texts, text_pairs, router)]


def predict(texts: Sequence[str], config: str) -> list[Answer]:
    """Classifies `texts` with the cascade of the config file `config` (loads it each call:
    keep a Predictor to classify many lists). Raises RefusedTexts as `Predictor.predict`
    does, before loading the tiers."""
    check_texts(texts)
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
    """CLI entry: prints each text's answer and every visited tier's; exit 2 on a bad config
    or when a text is refused (the others are still answered, as `ls` lists the files it
    finds: a script sees the answers and the failure)."""
    p = argparse.ArgumentParser(prog="beam-cascade predict",
                                description="Classify texts given on the command line with a "
                                            "cascade, printing each tier's answer. A text "
                                            "`run` would dead-letter (empty, invisible, not "
                                            "UTF-8) is refused on stderr, numbered from 1, "
                                            "and the exit status is then 2.")
    p.add_argument("--config", required=True, help="cascade config (YAML/JSON)")
    p.add_argument("texts", nargs="+", help="texts to classify")
    args = p.parse_args(argv)
    refused = refusal_reasons(args.texts)
    for i, reason in refused.items():
        print(f"beam-cascade predict: refused text {i + 1} {args.texts[i]!r}: {reason}",
              file=sys.stderr)
    texts = [text for i, text in enumerate(args.texts) if i not in refused]
    if not texts:
        return 2
    try:
        predictor = Predictor.from_config(args.config)
    except (ConfigError, ValueError, OSError) as e:
        print(f"beam-cascade predict: error: {e}", file=sys.stderr)
        return 2
    print(format_answers(predictor.predict(texts), predictor))
    return 2 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
