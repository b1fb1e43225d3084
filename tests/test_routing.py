"""The records that reach tier k+1 are exactly those tier k was not confident about."""
import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from models.confidence import score
from models.config import TierConfig
from models.loading import TierModel
from transforms.cascade import TierCascade
from transforms.parsing import RecordFields, to_record

WORDS = "the a movie film good bad great awful not very plot actor story fun dull".split()
TEXTS = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(1 + i % 6))
         for i in range(60)]
RECORDS = [to_record({"text": t}, RecordFields(), "mem", i) for i, t in enumerate(TEXTS)]
CHUNKS = [RECORDS[i:i + size] for i, size in ((0, 1), (1, 7), (8, 25), (33, 27))]  # uneven


def direct_confidences(model_path: str) -> dict[str, float]:
    """Each record's confidence from the model alone, one record at a time."""
    model = TierModel.load(model_path)
    return {r.id: score(model.logits([r.text])).confidences[0] for r in RECORDS}


def threshold_between(confidences, quantile: float) -> float:
    """A threshold halfway between two neighbouring confidences, far from any record."""
    ordered = sorted(confidences)
    k = int(len(ordered) * quantile)
    return (ordered[k - 1] + ordered[k]) / 2


def assert_routes(tiers, expected: dict[str, tuple[str, ...]]) -> None:
    """Runs the cascade and checks each record's path through the tiers; no dead letters."""
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(CHUNKS) | TierCascade(tiers)
        paths = list(out.decided.values()) | beam.Flatten() | beam.FlatMap(
            lambda chunk: [(r.id, tuple(v.tier for v in r.tiers)) for r in chunk])
        assert_that(paths, equal_to(list(expected.items())), label="paths")
        assert_that(out.dead_letters, equal_to([]), label="no dead letters")


def tier(name, model, threshold=None):
    return TierConfig(name=name, model=model, threshold=threshold, batch_size=8)


@pytest.fixture(scope="module")
def confidences(models):
    return {name: direct_confidences(models[name]) for name in ("small", "medium")}


def test_threshold_zero_keeps_everything_at_tier_one(models):
    assert_routes([tier("small", models["small"], 0.0), tier("large", models["large"])],
                  {r.id: ("small",) for r in RECORDS})


def test_threshold_one_escalates_everything(models, confidences):
    assert max(confidences["small"].values()) < 1.0
    assert_routes([tier("small", models["small"], 1.0), tier("large", models["large"])],
                  {r.id: ("small", "large") for r in RECORDS})


def test_only_records_below_the_threshold_reach_tier_two(models, confidences):
    threshold = threshold_between(confidences["small"].values(), 0.5)
    below = {i for i, c in confidences["small"].items() if c < threshold}
    assert 0 < len(below) < len(RECORDS)
    assert_routes([tier("small", models["small"], threshold), tier("large", models["large"])],
                  {i: ("small", "large") if i in below else ("small",)
                   for i in confidences["small"]})


def test_three_tiers_route_each_record_by_its_own_confidences(models, confidences):
    t1 = threshold_between(confidences["small"].values(), 0.3)
    t2 = threshold_between(confidences["medium"].values(), 0.5)
    expected = {}
    for record_id, c1 in confidences["small"].items():
        if c1 >= t1:
            expected[record_id] = ("small",)
        elif confidences["medium"][record_id] >= t2:
            expected[record_id] = ("small", "medium")
        else:
            expected[record_id] = ("small", "medium", "large")
    assert {len(path) for path in expected.values()} == {1, 2, 3}
    assert_routes([tier("small", models["small"], t1), tier("medium", models["medium"], t2),
                   tier("large", models["large"])], expected)


@pytest.mark.parametrize("t1, t2, path", [
    (0.0, 0.0, ("small",)), (1.0, 0.0, ("small", "medium")),
    (1.0, 1.0, ("small", "medium", "large")),
])
def test_three_tiers_with_thresholds_forcing_none_or_all(models, confidences, t1, t2, path):
    assert max(confidences["medium"].values()) < 1.0
    assert_routes([tier("small", models["small"], t1), tier("medium", models["medium"], t2),
                   tier("large", models["large"])], {r.id: path for r in RECORDS})
