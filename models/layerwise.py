"""Running a sequence classifier one encoder layer at a time, the shared ground of early exit
(models/early_exit.py) and token dropping (models/token_dropping.py): both change what the
next layer sees between layers.

Run layer by layer, a model answers as it does whole only if each layer gets what the
model's own encoder passes it. BERT's and RoBERTa's layers take the hidden states and the
attention mask; MPNet's also take the relative position bias its encoder computes once from
the sequence length, which here follows the rows that stay (early exit) and the tokens that
stay, at their distances in the whole text (token dropping). Encoders that pass their layers
anything else (DeBERTa's relative embeddings) or are laid out otherwise (DistilBERT) would
run silently wrong, so the model types are named (`LAYERWISE_MODEL_TYPES`, each checked
against the model's own forward in the tests) and any other is refused, before a job starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from models.weights import CheckpointError

# model type -> where each encoder layer keeps its self-attention, and the names of that
# module's query and key projections (token dropping recomputes the attention from them)
SELF_ATTENTION = {
    "bert": ("attention.self", "query", "key"),
    "roberta": ("attention.self", "query", "key"),
    "mpnet": ("attention.attn", "q", "k"),
}
LAYERWISE_MODEL_TYPES = tuple(SELF_ATTENTION)
EARLY_EXIT = "early exit (exits, exit_threshold)"
TOKEN_DROPPING = "token dropping (keep_tokens, length_budget)"


def check_layerwise(model_type: str, feature: str) -> None:
    """Refuses a model type whose encoder layers this module does not know how to run."""
    if model_type not in SELF_ATTENTION:
        raise CheckpointError(
            f"{feature} runs the encoder layer by layer, which supports the model types "
            f"{', '.join(LAYERWISE_MODEL_TYPES)}; this model is {model_type!r}. Use a model "
            "of one of those types for it, or leave those settings out")


@dataclass(frozen=True)
class LayerInputs:
    """What every encoder layer takes beside the hidden states, for the rows and tokens
    still running: their padding, the attention mask made from it (in the form the
    model's attention implementation wants; None when nothing is padded) and, for MPNet,
    the relative position bias (rows x heads x tokens x tokens)."""

    padding: torch.Tensor
    mask: Any
    position_bias: torch.Tensor | None


class Layerwise:
    """A sequence classifier taken apart: embeddings, encoder layers, head."""

    def __init__(self, model, feature: str):
        check_layerwise(model.config.model_type, feature)
        base = model.base_model
        self.model = model
        self.layers = base.encoder.layer
        self._base = base
        self._attention, self._query, self._key = SELF_ATTENTION[model.config.model_type]

    def start(self, encoded: dict) -> tuple[torch.Tensor, LayerInputs]:
        """The token states entering the first layer, and what the layers take beside."""
        embeddings = self._base.embeddings
        token_types = encoded.get("token_type_ids")
        hidden = embeddings(input_ids=encoded["input_ids"], **(
            {} if token_types is None else {"token_type_ids": token_types}))
        encoder = self._base.encoder
        bias = (encoder.compute_position_bias(hidden)
                if hasattr(encoder, "compute_position_bias") else None)
        padding = encoded["attention_mask"].bool()
        return hidden, LayerInputs(padding, self._mask(hidden, padding), bias)

    def run(self, layer, hidden: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        """One encoder layer, given what the model's encoder would give it."""
        extra = {} if inputs.position_bias is None else {"position_bias": inputs.position_bias}
        out = layer(hidden, inputs.mask, **extra)
        return out[0] if isinstance(out, tuple) else out

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's own head on the last layer's states: BERT's reads its pooler's
        output, RoBERTa's and MPNet's (no pooler) the first token's state themselves."""
        pooler = getattr(self._base, "pooler", None)
        return self.model.classifier(hidden if pooler is None else pooler(hidden))

    def keep_rows(self, inputs: LayerInputs, rows: torch.Tensor) -> LayerInputs:
        """The inputs of the rows `rows` (a boolean mask) only."""
        return LayerInputs(
            inputs.padding[rows],
            inputs.mask[rows] if isinstance(inputs.mask, torch.Tensor) else inputs.mask,
            None if inputs.position_bias is None else inputs.position_bias[rows])

    def keep_tokens(self, hidden: torch.Tensor, inputs: LayerInputs, positions: torch.Tensor,
                    valid: torch.Tensor) -> LayerInputs:
        """The inputs of each row's tokens at `positions` (rows x kept, in order; `valid`
        says which are real): the relative position bias between them as it was in the
        whole text, the mask of the new padding."""
        bias = inputs.position_bias
        if bias is not None:
            rows, heads, _, length = bias.shape
            kept = positions.shape[1]
            bias = bias.gather(2, positions[:, None, :, None].expand(rows, heads, kept, length))
            bias = bias.gather(3, positions[:, None, None, :].expand(rows, heads, kept, kept))
        return LayerInputs(valid, self._mask(hidden, valid), bias)

    def query_and_key(self, layer) -> tuple[torch.nn.Module, torch.nn.Module]:
        """A layer's self-attention query and key projections."""
        attention = layer.get_submodule(self._attention)
        return getattr(attention, self._query), getattr(attention, self._key)

    def _mask(self, hidden: torch.Tensor, padding: torch.Tensor):
        """The attention mask the layers take, made as the model's own forward makes it."""
        # imported here: it pulls in torch._dynamo (1.5 s), which n-gram and ONNX workers,
        # importing this module through models/loading.py, never need
        from transformers.masking_utils import create_bidirectional_mask
        return create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden,
                                         attention_mask=padding.long())

