"""Running a BERT-family classifier one encoder layer at a time, the shared ground of early
exit (models/early_exit.py) and token dropping (models/token_dropping.py): both change what
the next layer sees between layers."""
from __future__ import annotations

import torch


def bert_parts(model):
    """(embeddings, encoder, pooler) of a BERT-family classifier, or a clear error."""
    base = model.base_model
    parts = [getattr(base, name, None) for name in ("embeddings", "encoder", "pooler")]
    if None in parts or not hasattr(parts[1], "layer") or not hasattr(model, "classifier"):
        raise ValueError(
            f"early exit and token dropping need a BERT-family model (embeddings, "
            f"encoder.layer, pooler, classifier); {type(model).__name__} is not one")
    return parts


def embed(model, encoded: dict) -> torch.Tensor:
    """The token states entering the first encoder layer."""
    return bert_parts(model)[0](input_ids=encoded["input_ids"],
                                token_type_ids=encoded.get("token_type_ids"))


def layer_mask(model, hidden: torch.Tensor, padding: torch.Tensor):
    """The attention mask the model's layers take, in the form its attention implementation
    wants (None when nothing is padded), from a (batch, tokens) padding mask."""
    # imported here: it pulls in torch._dynamo (1.5 s), which n-gram and ONNX workers,
    # importing this module through models/loading.py, never need
    from transformers.masking_utils import create_bidirectional_mask
    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden,
                                     attention_mask=padding.long())
