import math

import pytest
import torch

from models.confidence import confidence, probabilities, score


def test_measures_on_a_hand_computed_row():
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    assert confidence(probs, "max_prob").item() == pytest.approx(0.7)
    assert confidence(probs, "margin").item() == pytest.approx(0.5)
    entropy = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert confidence(probs, "entropy").item() == pytest.approx(1 - entropy / math.log(3))


def test_every_measure_is_one_for_one_hot_and_lowest_for_uniform():
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    uniform = torch.full((1, 3), 1 / 3)
    for measure in ("max_prob", "margin", "entropy"):
        assert confidence(one_hot, measure).item() == pytest.approx(1.0)
    assert confidence(uniform, "margin").item() == pytest.approx(0.0)
    assert confidence(uniform, "entropy").item() == pytest.approx(0.0, abs=1e-6)


def test_temperature_flattens_probabilities():
    logits = torch.tensor([[2.0, 0.0]])
    assert probabilities(logits, 1.0)[0, 0] == pytest.approx(1 / (1 + math.exp(-2)))
    assert probabilities(logits, 2.0)[0, 0] == pytest.approx(1 / (1 + math.exp(-1)))


def test_score_returns_label_probabilities_and_confidence_per_row():
    scores = score(torch.tensor([[0.0, 3.0], [1.0, 0.0]]), 1.0, "max_prob")
    assert scores.label_ids == [1, 0]
    assert scores.confidences[0] == pytest.approx(max(scores.probabilities[0]))
    assert sum(scores.probabilities[1]) == pytest.approx(1.0)


def test_unknown_measure_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="max_prob"):
        confidence(torch.tensor([[0.5, 0.5]]), "variance")
