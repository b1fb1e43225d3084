"""Each adaptive mechanism of a tier against the same tier without it, side by side on SST-2.

    python -m bench.mechanisms [--data ../shared/data/sst2] [--repeats 3]

1. Early exit: a multi-exit tier (`beam-cascade train --exits ... --exits_only` on the
   reference tier 2, so its last exit is that model) at several exit thresholds, with exit
   temperatures fitted on dev, against the plain model, at batch sizes 1 and 32.
2. Runtimes: each transformer tier on PyTorch, on ONNX Runtime in fp32 and in int8 (all
   matrix multiplications, or the attention's only; models/onnx_export.py) and on OpenVINO
   in fp32.
3. Length-aware batching on a mixed-length input (the dev sentences plus long texts made of
   five test sentences each): passes in input order against the records sorted by length
   within windows of `sort_window` passes, as the pipeline's tiers do.
4. Token dropping: for each compute budget, the length configuration calibrate would choose
   on dev (so its dev accuracy is optimistic), against the full model.
Accuracy is on the 872 dev sentences; speed is bare-loop records/s (tokenisation included),
median of --repeats rounds in which the settings are interleaved. Writes mechanisms.md (a
markdown table per mechanism) into --results (default bench/results) and prints it.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
from typing import Callable

import torch

from bench.lib.cli import study_parser
from bench.lib.data import LabelledTexts, sst2_labelled, sst2_unlabelled
from bench.lib.paths import CACHE, REFERENCE_TIER2
from bench.lib.results import command_line, markdown_table, write_results
from bench.lib.scoring import best_within_budget, fit_temperature, length_family, length_sweep
from bench.lib.tiers import EarlyExit, TierModel
from bench.lib.timing import interleaved_medians, load_for_timing, scoring_seconds

EXIT_THRESHOLDS = (0.99, 0.95, 0.9, 0.85, 0.8, 0.7)
SORT_WINDOWS = (1, 8, 32)
LENGTH_BUDGETS = (0.8, 0.65, 0.5, 0.35)
SECTIONS = ("early_exit", "runtimes", "sorting", "token_dropping")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = study_parser("bench.mechanisms", __doc__)
    p.add_argument("--plain", default=REFERENCE_TIER2,
                   help="the tier 2 without exits")
    p.add_argument("--exits", default=f"{CACHE}/sst2-minilm-l6-exits",
                   help="the same model with inner exits")
    p.add_argument("--small", default=f"{CACHE}/sst2-minilm-l3",
                   help="a cheaper transformer tier, also quantised")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma list of the sections to run, of {', '.join(SECTIONS)}")
    return p.parse_args(argv)


def accuracy(model: TierModel, dev: LabelledTexts) -> float:
    predicted = model.logits(dev.texts).argmax(-1)
    return (predicted == torch.tensor(dev.label_ids)).double().mean().item()


def early_exit_table(plain: TierModel, exits: TierModel, dev: LabelledTexts,
                     repeats: int) -> str:
    """Accuracy, layers run and records/s at each exit threshold and batch size."""
    labels = torch.tensor(dev.label_ids)
    temperatures = tuple(fit_temperature(logits, labels) for logits in exits.exit_logits(
        dev.texts))
    rows = {"plain model": plain}
    rows.update({f"exit_threshold {t}": exits.with_settings(early_exit=EarlyExit(t, temperatures))
                 for t in EXIT_THRESHOLDS})
    facts = {}
    for name, model in rows.items():
        layers = model.logits_and_exits(dev.texts)[1].double().mean().item()
        facts[name] = (accuracy(model, dev), layers / model.depth)
    seconds = {}
    for batch_size in (1, 32):
        settings = {name: (lambda m=model, b=batch_size: scoring_seconds(m, dev.texts, b))
                    for name, model in rows.items()}
        seconds[batch_size] = interleaved_medians(settings, repeats)
    lines = [f"Exit temperatures fitted on dev: "
             f"{', '.join(f'{t:.3f}' for t in temperatures)} (exits after layers "
             f"{list(exits.exits.exit_layers)}).", "",
             "| setting | dev accuracy | layers run | rec/s batch 1 | speedup | "
             "rec/s batch 32 | speedup |", "|---|---|---|---|---|---|---|"]
    for name in rows:
        acc, share = facts[name]
        cells = [f"{len(dev.texts) / seconds[b][name]:.0f} | "
                 f"{seconds[b]['plain model'] / seconds[b][name]:.2f}x" for b in (1, 32)]
        lines.append(f"| {name} | {acc:.2%} | {share:.0%} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


RUNTIMES = (("torch", None), ("onnxruntime", None), ("onnxruntime", "int8"),
            ("onnxruntime", "int8_attention"), ("openvino", None))


def runtimes_table(paths: dict[str, str], dev: LabelledTexts, test_texts: list[str],
                   repeats: int) -> str:
    """Each tier on PyTorch, ONNX Runtime (fp32 and int8) and OpenVINO: dev accuracy,
    agreement with PyTorch fp32 on the unlabelled test sentences (data no choice was made
    on), records/s in sorted passes of 32 over dev + test."""
    texts = dev.texts + test_texts
    lines = [f"Bare loops over {len(texts)} sentences (dev + test), passes of 32 sorted by "
             "length, 2 threads.", "",
             "| tier | runtime | precision | dev accuracy | agreement with torch fp32 (test) "
             "| rec/s | speedup |", "|---|---|---|---|---|---|---|"]
    for tier, path in paths.items():
        models = {(runtime, scheme): load_for_timing(path, device="cpu", runtime=runtime,
                                                     quantize=scheme)
                  for runtime, scheme in RUNTIMES}
        seconds = interleaved_medians({name: (lambda m=m: scoring_seconds(m, texts, 32))
                                       for name, m in models.items()}, repeats)
        reference = models[RUNTIMES[0]].logits(test_texts).argmax(-1)
        for (runtime, scheme), model in models.items():
            agreement = (model.logits(test_texts).argmax(-1) == reference).double().mean()
            lines.append(f"| {tier} | {runtime} | {scheme or 'fp32'} | "
                         f"{accuracy(model, dev):.2%} | {agreement:.2%} | "
                         f"{len(texts) / seconds[(runtime, scheme)]:.0f} | "
                         f"{seconds[RUNTIMES[0]] / seconds[(runtime, scheme)]:.2f}x |")
    return "\n".join(lines)


def mixed_length_texts(dev: LabelledTexts, test_texts: list[str]) -> list[str]:
    """The dev sentences and long texts of five test sentences each, shuffled (seed 0)."""
    long_texts = [" ".join(test_texts[i:i + 5]) for i in range(0, len(test_texts) - 4, 5)]
    texts = dev.texts + long_texts
    random.Random(0).shuffle(texts)
    return texts


def sorting_table(path: str, texts: list[str], repeats: int) -> str:
    """Records/s of passes of 32 over `texts` (max_length 256) as Beam hands the tier
    windows of 32 x sort_window records, each sorted by length inside the tier."""
    model = load_for_timing(path, max_length=256, device="cpu").with_settings(batch_size=32)

    def windows(window: int) -> Callable[[], None]:
        size = 32 * window
        return lambda: [model.logits(texts[i:i + size]) for i in range(0, len(texts), size)]

    seconds = interleaved_medians({w: windows(w) for w in SORT_WINDOWS}, repeats)
    tokens = [len(ids) for ids in model.tokenizer(texts, truncation=True,
                                                  max_length=256)["input_ids"]]
    lines = [f"{len(texts)} texts, {min(tokens)} to {max(tokens)} tokens (median "
             f"{statistics.median(tokens):.0f}).", "",
             "| sort_window | records sorted together | rec/s | speedup over input order |",
             "|---|---|---|---|"]
    lines += [f"| {w} | {32 * w} | {len(texts) / seconds[w]:.0f} | "
              f"{seconds[1] / seconds[w]:.2f}x |" for w in SORT_WINDOWS]
    return "\n".join(lines)


def token_dropping_table(path: str, dev: LabelledTexts, repeats: int) -> str:
    """Per budget: the chosen length configuration's accuracy, token-layers and records/s
    (batch 32) against the full model."""
    model = load_for_timing(path, device="cpu")
    labels = torch.tensor(dev.label_ids)
    points = length_sweep(model, dev.texts, None, labels, [()] + length_family(model.depth))
    chosen = {budget: best_within_budget(points, budget) for budget in LENGTH_BUDGETS}
    rows = {"full model": points[0], **{f"budget {b:.0%}": p for b, p in chosen.items()}}

    def scorer(keep: tuple[float, ...]) -> Callable[[], float]:
        configured = model.with_settings(keep_tokens=keep or None)  # full: the plain forward
        return lambda: scoring_seconds(configured, dev.texts, 32)

    seconds = interleaved_medians({name: scorer(p.keep) for name, p in rows.items()}, repeats)
    cells = [[name, ", ".join(f"{k:g}" for k in p.keep) or "all", f"{p.accuracy:.2%}",
              f"{p.compute_share:.0%}", f"{len(dev.texts) / seconds[name]:.0f}",
              f"{seconds['full model'] / seconds[name]:.2f}x"] for name, p in rows.items()]
    return ("Texts sorted by length, passes of 32; the configurations were chosen on dev, so "
            "their dev accuracy is optimistic.\n\n" + markdown_table(
                ["setting", "keep_tokens", "dev accuracy", "token-layers", "rec/s batch 32",
                 "speedup"], cells))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    dev = sst2_labelled(args.data, "dev.tsv")
    test_texts = sst2_unlabelled(args.data)
    builders = {
        "early_exit": ("Early exit (batched, inside one tier)", lambda: early_exit_table(
            load_for_timing(args.plain, device="cpu"), load_for_timing(args.exits, device="cpu"),
            dev, args.repeats)),
        "runtimes": ("Runtimes and int8", lambda: runtimes_table(
            {name: path for name, path in (("minilm3", args.small), ("minilm6", args.plain))
             if os.path.isdir(path)}, dev, test_texts, args.repeats)),
        "sorting": ("Length-aware batching on mixed-length input", lambda: sorting_table(
            args.plain, mixed_length_texts(dev, test_texts), args.repeats)),
        "token_dropping": ("Token dropping (Length-Adaptive Transformer)",
                           lambda: token_dropping_table(args.plain, dev, args.repeats)),
    }
    sections = [(builders[s][0], builders[s][1]()) for s in args.sections.split(",")]
    write_results(args.results, "mechanisms", (
        "# Adaptive mechanisms, each against the same tier without it\n\n" + "".join(
            f"## {title}\n\n{table}\n\n" for title, table in sections)
        + f"Bare loops on this machine's CPU, median of {args.repeats} interleaved rounds. "
        f"Reproduce: `{command_line('bench.mechanisms', argv)}`\n"))


if __name__ == "__main__":
    main()
