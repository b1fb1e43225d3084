"""How `beam-cascade train` feeds a transformer: shuffled batches of texts of similar length
(every text once an epoch, far less padding than random batches) and bf16 mixed precision,
which trains as fp32 does and saves fp32 weights."""
import json
import random

import pytest
from conftest import write_jsonl
from safetensors.torch import load_file

from models.loading import load_tier
from models.training import _length_grouped_batches
from models.training_config import TrainingConfig
from pipeline.train import main as train_main


def padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    """What a batch pads to (its longest text) times its size, summed over the batches."""
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)


def test_grouped_batches_hold_every_text_once_and_pad_far_less_than_random_ones():
    rng = random.Random(1)
    lengths = [rng.randint(1, 50) for _ in range(5000)]
    batches = _length_grouped_batches(lengths, 32, random.Random(0))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(1 <= len(batch) <= 32 for batch in batches)
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    shuffled = [order[i:i + 32] for i in range(0, len(order), 32)]
    assert padded_tokens(batches, lengths) < 0.6 * padded_tokens(shuffled, lengths)


def test_grouped_batches_come_in_a_new_random_order_each_epoch():
    lengths = [i % 20 for i in range(2000)]
    rng = random.Random(0)
    first, second = (_length_grouped_batches(lengths, 16, rng) for _ in range(2))
    assert first != second
    longest = [max(lengths[i] for i in batch) for batch in first]
    assert longest != sorted(longest)  # not shortest first: long and short batches mixed


def test_an_unknown_precision_is_refused_with_the_ones_supported():
    with pytest.raises(ValueError, match="fp32, bf16"):
        TrainingConfig(precision="fp16")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_in_either_precision_learns_and_saves_fp32_weights(models, tmp_path,
                                                                     precision):
    rows = [{"text": f"{w} film", "label": label}
            for w, label in (("fun", "pos"), ("dull", "neg")) * 16]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    output = tmp_path / precision
    assert train_main(["--train", str(train), "--dev", str(train), "--base", models["small"],
                       "--epochs", "4", "--lr", "5e-3", "--batch_size", "8", "--device",
                       "cpu", "--label_names", "neg,pos", "--precision", precision,
                       "--output", str(output)]) == 0
    report = json.loads((output / "TRAINING.json").read_text())
    assert report["precision"] == precision
    assert report["dev_accuracy"] == 1.0
    weights = load_file(str(output / "model.safetensors"))
    assert {str(w.dtype) for w in weights.values()} == {"torch.float32"}
    assert tuple(load_tier(str(output), device="cpu").labels) == ("neg", "pos")


def test_bf16_is_refused_for_an_n_gram_tier_before_any_training(tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "fun", "label": "pos"},
                                                   {"text": "dull", "label": "neg"}])
    assert train_main(["--kind", "ngram", "--train", str(train), "--precision", "bf16",
                       "--output", str(tmp_path / "out")]) == 2
    assert "--precision bf16 is for transformer tiers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
