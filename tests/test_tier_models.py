"""Tier models score texts in length-sorted forward passes without changing any answer."""
import torch

from models.config import TierConfig
from models.loading import TierModel, load_configured_tier
from transforms.scoring import TierModelHandler

TEXTS = ["good", "a very long and rather dull film about nothing at all really", "bad plot",
         "great", "not very good at all", "the acting is fun but the story drags on"]


def test_sorted_passes_give_each_text_its_own_logits(models):
    """Sorting by length and chunking must not reorder or mix up the results: each text's
    logits equal those from scoring it alone (padding is masked, so only float noise)."""
    model = TierModel.load(models["small"], batch_size=2)
    alone = torch.cat([model.logits([t]) for t in TEXTS])
    batched = model.logits(TEXTS)
    assert torch.allclose(batched, alone, atol=1e-5)


def test_sorted_passes_keep_text_pairs_together(models):
    model = TierModel.load(models["small"], batch_size=2)
    pairs = list(reversed(TEXTS))
    alone = torch.cat([model.logits([t], [p]) for t, p in zip(TEXTS, pairs)])
    assert torch.allclose(model.logits(TEXTS, pairs), alone, atol=1e-5)


def test_beam_batches_are_fixed_size_windows_of_forward_passes():
    """min == max: BatchElements does not ramp up from one record, and one call holds
    sort_window forward passes to sort across."""
    handler = TierModelHandler(TierConfig(name="t", model="m", batch_size=16, sort_window=4))
    kwargs = handler.batch_elements_kwargs()
    assert kwargs["min_batch_size"] == kwargs["max_batch_size"] == 64


def test_a_call_makes_one_forward_pass_per_batch_size_of_texts(models):
    """What routing_stats.json counts as model_passes, apart from RunInference's calls."""
    tier = load_configured_tier(TierConfig(name="small", model=models["small"], batch_size=4))
    assert [tier.forward_passes(n) for n in (0, 1, 4, 5, 12)] == [0, 1, 1, 2, 3]
