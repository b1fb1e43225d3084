"""Early exit inside a tier (Schwartz et al. 2020, "The Right Tool for the Job"; DeeBERT).

A multi-exit model is a sequence classifier (BERT, RoBERTa, MPNet: models/layerwise.py) plus
a classifier head after some inner encoder layers. Its last exit is the model's own head, so
the folder is still a standard checkpoint that any Hugging Face tool loads as a plain
classifier; the inner heads live beside it in `exit_heads.safetensors` and config.json lists
the exit layers.

Inference is batched, unlike the published implementations (batch size 1): a batch runs layer
by layer, and at each exit the rows whose temperature-scaled confidence reaches the threshold
leave with that exit's answer while the rest go on, so easy records cost only the first layers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.confidence import confidence, probabilities
from models.layerwise import EARLY_EXIT, Layerwise

EXIT_LAYERS_KEY = "exit_layers"
HEADS_FILE = "exit_heads.safetensors"


@dataclass(frozen=True)
class EarlyExit:
    """How a multi-exit tier leaves early: a row stops at the first exit whose confidence,
    after that exit's temperature, reaches `threshold`."""

    threshold: float
    temperatures: tuple[float, ...] = ()  # one per exit; () leaves the logits as they are
    measure: str = "max_prob"


class ExitHead(nn.Module):
    """A classifier on an inner layer: the mean of its token states (padding left out), then
    dense + tanh + linear like BERT's pooler and head.

    Not the [CLS] state, as BERT's own head uses: in early layers [CLS] has gathered little of
    the sentence yet. With frozen SST-2 MiniLM layers, [CLS] heads after layers 1-3 stayed at
    chance (51-53% dev), while the mean of the tokens carries the sentence at any depth (the
    sentence-transformers base was trained to be mean-pooled).
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.classifier(self.dropout(torch.tanh(self.dense(pooled))))


def _new_heads(config, layers: list[int]) -> nn.ModuleDict:
    """One ExitHead per inner exit layer, keyed by the layer number."""
    return nn.ModuleDict({
        str(layer): ExitHead(config.hidden_size, config.num_labels, config.hidden_dropout_prob)
        for layer in layers})


class MultiExitClassifier(nn.Module):
    """A sequence classifier with extra exits after inner layers."""

    def __init__(self, model, heads: nn.ModuleDict):
        super().__init__()
        self.model = model
        self.heads = heads

    @property
    def exit_layers(self) -> tuple[int, ...]:
        return tuple(self.model.config.exit_layers)

    @classmethod
    def add_exits(cls, model, layers: tuple[int, ...]) -> "MultiExitClassifier":
        """Gives `model` heads after `layers` (1-based); the last layer is the model's own
        classifier."""
        depth = len(Layerwise(model, EARLY_EXIT).layers)  # refuses other architectures
        if not all(1 <= layer <= depth for layer in layers):
            raise ValueError(f"exit layers {list(layers)} must be between 1 and the model's "
                             f"{depth} encoder layers")
        layers = tuple(sorted(set(layers) | {depth}))
        model.config.exit_layers = list(layers)
        return cls(model, _new_heads(model.config, list(layers[:-1])))

    def save_pretrained(self, folder: str) -> None:
        self.model.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in self.heads.state_dict().items()},
                  os.path.join(folder, HEADS_FILE))

    @classmethod
    def from_model(cls, model, folder: str) -> "MultiExitClassifier":
        """Attaches the inner heads saved in `folder` to its already loaded `model`."""
        heads = _new_heads(model.config, model.config.exit_layers[:-1])
        heads.load_state_dict(load_file(os.path.join(folder, HEADS_FILE)))
        return cls(model, heads.to(model.device).train(model.training))

    def exit_logits(self, encoded: dict) -> list[torch.Tensor]:
        """Every exit's logits for the whole batch, first exit first (training, calibration)."""
        out = self.model(**encoded, output_hidden_states=True)
        inner = [self.heads[str(layer)](out.hidden_states[layer], encoded["attention_mask"])
                 for layer in self.exit_layers[:-1]]
        return inner + [out.logits]

    def early_exit(self, encoded: dict, settings: EarlyExit
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs the batch layer by layer; returns each row's logits, divided by the
        temperature of the exit it left at, and that exit's layer number.

        A row leaves at the first exit whose calibrated confidence reaches the threshold, or
        at the last exit.
        """
        network = Layerwise(self.model, EARLY_EXIT)
        hidden, inputs = network.start(encoded)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        logits = torch.empty(hidden.shape[0], self.model.config.num_labels,
                             device=hidden.device)
        layers = torch.empty(hidden.shape[0], dtype=torch.long, device=hidden.device)
        temperature_of = dict(zip(self.exit_layers,
                                  settings.temperatures or [1.0] * len(self.exit_layers)))
        last = self.exit_layers[-1]
        for number, layer in enumerate(network.layers, start=1):
            hidden = network.run(layer, hidden, inputs)
            if number not in temperature_of:
                continue
            exit_logits = (network.classify(hidden) if number == last
                           else self.heads[str(number)](hidden, inputs.padding)
                           ).float() / temperature_of[number]
            leaving = (confidence(probabilities(exit_logits), settings.measure)
                       >= settings.threshold
                       if number < last else torch.ones_like(rows, dtype=torch.bool))
            logits[rows[leaving]] = exit_logits[leaving]
            layers[rows[leaving]] = number
            staying = ~leaving
            if not staying.any():
                break
            hidden, rows = hidden[staying], rows[staying]
            inputs = network.keep_rows(inputs, staying)
        return logits, layers


def choose_exits(all_exits: torch.Tensor, settings: EarlyExit
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Early exit replayed on every exit's logits (shape exits x records x labels), as
    `MultiExitClassifier.early_exit` decides it: the temperature-scaled logits of the exit
    each record leaves at, and that exit's index."""
    temperatures = settings.temperatures or [1.0] * len(all_exits)
    scaled = all_exits.float() / torch.tensor(temperatures, dtype=torch.float32).view(-1, 1, 1)
    confident = confidence(probabilities(scaled), settings.measure) >= settings.threshold
    confident[-1] = True
    leaving = confident.int().argmax(dim=0)  # the first confident exit
    return scaled[leaving, torch.arange(scaled.shape[1])], leaving


@dataclass(frozen=True)
class ExitPoint:
    """Early exit at one threshold: accuracy, and its cost as the mean share of the
    encoder's layers that a record runs through."""

    threshold: float
    accuracy: float
    layer_share: float
    share_per_exit: tuple[float, ...]


def exit_sweep(all_exits: torch.Tensor, labels: torch.Tensor, temperatures: tuple[float, ...],
               layers: tuple[int, ...], thresholds: tuple[float, ...],
               measure: str = "max_prob") -> list[ExitPoint]:
    """The speed/accuracy knob of a multi-exit tier on labelled data, one point per threshold
    (a threshold above 1 never exits early: the plain model)."""
    points = []
    for threshold in thresholds:
        logits, leaving = choose_exits(all_exits, EarlyExit(threshold, temperatures, measure))
        counts = torch.bincount(leaving, minlength=len(layers)).double() / len(labels)
        points.append(ExitPoint(
            threshold=threshold,
            accuracy=(logits.argmax(-1) == labels).double().mean().item(),
            layer_share=(torch.tensor(layers, dtype=torch.float64)[leaving].mean()
                         / layers[-1]).item(),
            share_per_exit=tuple(counts.tolist())))
    return points


def has_exits(config) -> bool:
    """Whether a loaded model config describes a multi-exit checkpoint."""
    return bool(getattr(config, EXIT_LAYERS_KEY, None))

