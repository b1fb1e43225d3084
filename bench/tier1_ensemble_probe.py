"""Probe for issue 22: would a second cheap model beside the n-gram tier route better?

    python -m bench.tier1_ensemble_probe [--data ../shared/data/sst2] [--splits 50]
        [--epochs 3] [--width 128] [--tokens word_pieces|words] [--seed 0]

A probe, not a feature: the student model lives here until it earns a tier kind in models/.
Student: a word-piece CNN (the reference tier 2's tokenizer and its word-piece embeddings,
frozen, projected to --width, convolutions of widths 1-3 with --width filters, max and mean
pooled), distilled from the reference MiniLM-L6 tier 2 (its probabilities at T=1, plus the
gold label where there is one, weight 0.5) over SST-2's 67,349 train phrases and the 1,821
unlabelled test sentences. With `--tokens words` the CNN reads the n-gram tier's own word
tokens instead (no second tokenizer): each word's vector is the mean of its word pieces'
embeddings, made once for every word of the SST-2 texts (a deployed tier would make a new
word's vector when it first meets it), and the projection is folded into that table after
training, so a text costs a regular expression, a look-up per word and the convolutions.
The teacher's logits are computed once (ONNX Runtime fp32, the same
answers as PyTorch) and cached in bench/cache/probe.

On the 872 dev sentences, for the n-gram tier, the student and both together (mean of their
log-probabilities, one cheap tier made of two models): accuracy, agreement with tier 2, the
escalation at the lowest threshold within 0.5 points of tier 2 on all of dev, and over
--splits halvings the threshold chosen on one half replayed on the other (as
bench/distillation.py; no bound). Bare loops on the 2,693 dev + test sentences (sorted by
length, tokenisation included; medians of --repeats interleaved rounds after a warm-up): tier
2 on PyTorch in passes of 32, the cheap models in passes of 1,024. The pair's cost is the sum
of its two models', each tokenising the texts itself (with `--tokens words` both run the
same regular expression, which a tier made of the two would run once). Writes --results
(markdown) and its .json twin.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer

from bench.distillation import lowest_threshold, split_half
from bench.report import markdown_table
from bench.sst2 import CACHE, DEFAULT_DATA, LABELS, REFERENCE_TIER2, sst2_file, tier1_model
from models.batching import batches, length_order
from models.datasets import read_labelled, read_rows
from models.loading import load_tier
from models.ngram import TOKEN
from models.throughput import interleaved_medians, load_for_timing, scoring_seconds

MAX_TOKENS = 64
BATCH = 128
LEARNING_RATE = 2e-3


class TokenCNN(nn.Module):
    """Frozen token vectors -> tanh projection -> convolutions (widths 1-3) -> max and mean
    over the text's tokens -> logits."""

    def __init__(self, vectors: torch.Tensor, width: int, labels: int = 2):
        super().__init__()
        self.embed = nn.Embedding.from_pretrained(vectors, freeze=True, padding_idx=0)
        self.project = nn.Linear(vectors.shape[1], width)
        self.folded: nn.Embedding | None = None
        self.convs = nn.ModuleList(nn.Conv1d(width, width, k, padding=k - 1) for k in (1, 2, 3))
        self.out = nn.Linear(2 * width * len(self.convs), labels)

    def token_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        if self.folded is not None:
            return self.folded(ids)
        return torch.tanh(self.project(self.embed(ids)))

    def fold(self) -> None:
        """After training: the projected vector of every token, once, so that inference
        looks them up instead of projecting each token of each text."""
        with torch.no_grad():
            self.folded = nn.Embedding.from_pretrained(
                torch.tanh(self.project(self.embed.weight)), freeze=True)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.token_vectors(ids).transpose(1, 2)
        keep = mask[:, None, :].float()
        pooled = []
        for conv in self.convs:
            h = F.relu(conv(x))[:, :, :ids.shape[1]]
            pooled += [(h * keep - (1 - keep) * 1e4).max(-1).values,
                       (h * keep).sum(-1) / keep.sum(-1)]
        return self.out(torch.cat(pooled, -1))


class WordPieces:
    """Texts -> tier 2's word-piece ids (padded) and mask; `vectors` its embedding table."""

    def __init__(self, tokenizer: AutoTokenizer, table: torch.Tensor):
        self.tokenizer = tokenizer
        self.vectors = table

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(texts, padding="longest", truncation=True,
                                 max_length=MAX_TOKENS, return_tensors="pt")
        return encoded["input_ids"], encoded["attention_mask"]


class Words:
    """Texts -> ids of the n-gram tier's word tokens (0 padding, 1 an unknown word) and mask;
    `vectors` holds each known word's mean word-piece embedding."""

    def __init__(self, tokenizer: AutoTokenizer, table: torch.Tensor, texts: list[str]):
        words = sorted({w for text in texts for w in TOKEN.findall(text.lower())})
        self.ids = {word: i + 2 for i, word in enumerate(words)}
        pieces = tokenizer(words, add_special_tokens=False)["input_ids"]
        self.vectors = torch.cat([torch.zeros(2, table.shape[1]), torch.stack(
            [table[p].mean(0) if p else table[tokenizer.unk_token_id] for p in pieces])])

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [[self.ids.get(w, 1) for w in TOKEN.findall(text.lower())][:MAX_TOKENS] or [1]
                for text in texts]
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
        return ids, ids > 0


def teacher_logits(data: str) -> dict:
    """The reference tier 2's logits on train, dev and test (cached), with the texts and labels."""
    key = hashlib.sha256(os.path.abspath(data).encode()).hexdigest()[:16]
    path = os.path.join(CACHE, "probe", f"teacher-{key}.pt")  # one per data folder
    if os.path.isfile(path):
        return torch.load(path)
    train = read_labelled(sst2_file(data, "train.tsv"), "sentence", label_names=LABELS)
    dev = read_labelled(sst2_file(data, "dev.tsv"), "sentence", label_names=LABELS)
    test = [r["sentence"] for r in read_rows(sst2_file(data, "test_unlabeled.tsv"))]
    tier2 = load_tier(REFERENCE_TIER2, batch_size=64, runtime="onnxruntime")
    cached = {"train_texts": train.texts, "train_labels": torch.tensor(train.label_ids),
              "dev_texts": dev.texts, "dev_labels": torch.tensor(dev.label_ids),
              "test_texts": test}
    for name in ("train", "dev", "test"):
        texts = cached[f"{name}_texts"]
        cached[name] = torch.cat([tier2.logits(texts[i:i + 4096])
                                  for i in range(0, len(texts), 4096)])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(cached, path)
    return cached


def token_encoder(kind: str, teacher: dict) -> WordPieces | Words:
    tokenizer = AutoTokenizer.from_pretrained(REFERENCE_TIER2)
    table = AutoModel.from_pretrained(REFERENCE_TIER2).get_input_embeddings().weight.detach()
    if kind == "word_pieces":
        return WordPieces(tokenizer, table)
    return Words(tokenizer, table, teacher["train_texts"] + teacher["dev_texts"]
                 + teacher["test_texts"])


def train_student(teacher: dict, encode: WordPieces | Words, width: int, epochs: int,
                  seed: int) -> TokenCNN:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = TokenCNN(encode.vectors.clone(), width)
    texts = teacher["train_texts"] + teacher["test_texts"]
    soft = torch.softmax(torch.cat([teacher["train"], teacher["test"]]).float(), -1)
    gold = torch.cat([teacher["train_labels"], torch.full((len(teacher["test_texts"]),), -1)])
    steps = list(batches(len(texts), BATCH, length_order(texts)))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=LEARNING_RATE, weight_decay=0.01)
    total, step = epochs * len(steps), 0
    model.train()
    for _ in range(epochs):
        rng.shuffle(steps)
        for chunk in steps:
            for group in optimiser.param_groups:  # warm-up, then linear decay
                group["lr"] = LEARNING_RATE * min(1.0, (step + 1) / 200) * (1 - step / total)
            step += 1
            logits = model(*encode([texts[i] for i in chunk]))
            loss = F.kl_div(F.log_softmax(logits, -1), soft[chunk], reduction="batchmean")
            labelled = gold[chunk] >= 0
            if labelled.any():
                loss = loss + 0.5 * F.cross_entropy(logits[labelled], gold[chunk][labelled])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.fold()
    return model.eval()


@torch.no_grad()
def student_logits(model: TokenCNN, encode: WordPieces | Words, texts: list[str]
                   ) -> torch.Tensor:
    """Logits in input order, from passes of 1,024 texts sorted by length (encoding included,
    as the other tiers' bare loops include tokenisation)."""
    out = torch.empty(len(texts), 2)
    for chunk in batches(len(texts), 1024, length_order(texts)):
        out[chunk] = model(*encode([texts[i] for i in chunk]))
    return out


def routing_row(log_probs: torch.Tensor, labels: torch.Tensor, tier2: torch.Tensor,
                splits: int) -> dict:
    confidence, answer = log_probs.exp().max(-1)
    right, tier2_right = answer == labels, tier2 == labels
    threshold = lowest_threshold(confidence, right, tier2_right)
    return {"accuracy": right.double().mean().item(),
            "agreement": (answer == tier2).double().mean().item(),
            "escalation_all_dev": (confidence < threshold).double().mean().item(),
            **split_half(confidence, right, tier2_right, splits)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tier1_ensemble_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with GLUE SST-2's TSV files")
    p.add_argument("--splits", type=int, default=50)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--tokens", choices=("word_pieces", "words"), default="word_pieces")
    p.add_argument("--seed", type=int, default=0, help="the student's initialisation and order")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds (medians, after a "
                   "warm-up round; the models interleaved in each)")
    p.add_argument("--results", default="bench/results/tier1_ensemble_probe.md")
    args = p.parse_args(argv)
    teacher = teacher_logits(args.data)
    encode = token_encoder(args.tokens, teacher)
    student = train_student(teacher, encode, args.width, args.epochs, args.seed)
    labels, tier2 = teacher["dev_labels"], teacher["dev"].argmax(-1)
    ngram = load_tier(tier1_model(None, args.data))
    timed = teacher["dev_texts"] + teacher["test_texts"]
    tier2_timed = load_for_timing(REFERENCE_TIER2, device="cpu")
    ngram_timed = load_for_timing(tier1_model(None, args.data))
    seconds = interleaved_medians({
        "tier 2": lambda: scoring_seconds(tier2_timed, timed, 32),
        "n-gram": lambda: scoring_seconds(ngram_timed, timed, 1024),
        "CNN": lambda: student_logits(student, encode, timed)}, args.repeats)
    seconds["n-gram + CNN"] = seconds["n-gram"] + seconds["CNN"]
    log_probs = {"n-gram": F.log_softmax(ngram.logits(teacher["dev_texts"]).float(), -1),
                 "CNN": F.log_softmax(student_logits(student, encode, teacher["dev_texts"]),
                                      -1)}
    log_probs["n-gram + CNN"] = F.log_softmax((log_probs["n-gram"] + log_probs["CNN"]) / 2, -1)
    record = {name: {**routing_row(lp, labels, tier2, args.splits),
                     "cost_ratio": seconds["tier 2"] / seconds[name]}
              for name, lp in log_probs.items()}
    rows = [[name, f"{r['accuracy']:.2%}", f"{r['agreement']:.1%}",
             f"{r['escalation_all_dev']:.1%}", f"{r['escalation']:.1%}",
             f"{100 * r['drop']:+.2f}", f"{r['broken']:.0%}", f"{r['cost_ratio']:.0f}x"]
            for name, r in record.items()]
    text = "\n".join([
        f"# Probe: a CNN over {args.tokens.replace('_', ' ')} beside the n-gram tier 1", "",
        f"`python -m bench.tier1_ensemble_probe --splits {args.splits} --epochs {args.epochs} "
        f"--width {args.width} --tokens {args.tokens} --seed {args.seed} --repeats {args.repeats} "
        f"--results {args.results}`: SST-2 dev (872 sentences), tier 2 the reference MiniLM-L6 "
        f"({(tier2 == labels).double().mean().item():.2%}). See the module's docstring.", "",
        markdown_table(["tier 1", "accuracy alone", "agrees with tier 2",
                        "escalation within 0.5 (all dev)", "escalation (held-out half)",
                        "drop (points, held-out)", "splits over 0.5", "cheaper than tier 2 by"],
                       rows)]) + "\n"
    with open(args.results, "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.splitext(args.results)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "tiers": record, "seconds": seconds}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
