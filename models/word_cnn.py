"""A small word CNN that an n-gram tier can carry beside its linear model (issue 22).

The n-gram model sums evidence n-gram by n-gram, and an n-gram no training text held weighs
nothing, so a rare word or phrasing leaves it sure of the wrong answer. A CNN over word
vectors borrowed from a transformer knows a word by its pieces (a new word lands near its
relatives) and reads each word with the two before it. The two models err on different
records: averaged (mean of the two log-probabilities) they make a tier 1 whose confidence
ranks its own mistakes far better, at a fraction of a transformer's cost (docs/benchmarks.md,
"Learned deferral, distilled tiers 1 and the word CNN").

Both read the same word tokens (models/ngram.py `TOKEN`), so a text is split once. A word's
vector is the mean of its word pieces' embeddings, borrowed from a transformer tier's table
(usually the teacher's), through a learned linear projection and tanh. The projection is
linear, so projecting the mean equals averaging the projected pieces: the folder stores the
projected piece table (pieces x width, `folded`) and the tokenizer (`PIECES_FILE`), and a word
no training text held gets its vector exactly as a training word did. The tier makes each
word's vector the first time a text holds it and keeps it (`WordVectors`).
"""
from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from models.batching import batches, length_order
from models.long_texts import plain_tokenizer
from models.tensors import int64_tensor

WINDOW = 3  # words each convolution filter reads: the word and the two before it
CONFIG_KEY = "word_cnn"  # its settings in the n-gram folder's config.json
WEIGHTS_FILE = "word_cnn.safetensors"
PIECES_FILE = "word_pieces.json"  # the tokenizer that splits a word into pieces
PASS = 256  # texts per forward pass, of similar lengths: 12% less time than 1,024 on SST-2


@dataclass(frozen=True)
class WordCnnConfig:
    """`pieces`: rows of the word-piece table; `unknown_piece`: the piece a word with no
    pieces of its own stands for; words past `max_words` in a text are not read (the
    n-gram model reads them all)."""

    pieces: int
    unknown_piece: int
    width: int = 32
    max_words: int = 128

    def __post_init__(self) -> None:
        """A damaged config.json must fail here, not as a crash inside a worker."""
        values = asdict(self)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values.values()):
            raise ValueError(f"word_cnn settings must be whole numbers, got {values}")
        if min(self.pieces, self.width, self.max_words) < 1:
            raise ValueError(f"word_cnn pieces, width and max_words must be at least 1, got "
                             f"{values}")
        if not 0 <= self.unknown_piece < self.pieces:
            raise ValueError(f"word_cnn unknown_piece {self.unknown_piece} is not a row of "
                             f"its {self.pieces}-row piece table")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "WordCnnConfig":
        if not isinstance(raw, dict):
            raise ValueError(f"word_cnn is {raw!r}, not an object of settings")
        return cls(**{key: raw[key] for key in ("pieces", "unknown_piece", "width",
                                                "max_words")})


class WordCNN(nn.Module):
    """word vectors -> a convolution over each word's window of WINDOW words -> max and mean
    over the text -> logits.

    The convolution is one matrix product over the windows laid side by side: on the CPU
    torch's conv1d costs a fixed ~0.1 ms a call, 5x the whole product for a call of 8 texts
    and still 1.2-1.7x for calls of 128-1,024.

    `piece_dim` is the borrowed embeddings' size while training and `width` once folded."""

    def __init__(self, config: WordCnnConfig, labels: int, piece_dim: int):
        super().__init__()
        self.config = config
        width = config.width
        # Zeros given, not drawn at random: the table is always loaded or copied in.
        self.pieces = nn.EmbeddingBag(config.pieces, piece_dim, mode="mean",
                                      _weight=torch.zeros(config.pieces, piece_dim))
        self.pieces.weight.requires_grad_(False)
        self.project = nn.Linear(piece_dim, width)
        self.window = nn.Linear(WINDOW * width, WINDOW * width)
        self.out = nn.Linear(2 * WINDOW * width, labels)

    def piece_means(self, piece_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Each word's mean piece embedding (flat piece ids, one offset per word)."""
        return self.pieces(piece_ids, offsets)

    def word_vectors(self, means: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.project(means))

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits of texts given as word vectors (texts x words x width) and a mask of
        their real words; padding, and the words before a text's first, are zero vectors."""
        keep = mask.unsqueeze(-1).to(vectors.dtype)
        length = vectors.shape[1]
        x = F.pad(vectors * keep, (0, 0, WINDOW - 1, 0))
        windows = torch.cat([x[:, i:i + length] for i in range(WINDOW)], -1)
        h = F.relu(self.window(windows)) * keep  # >= 0, so padding's 0 never wins the max
        mean = h.sum(1) / keep.sum(1).clamp(min=1)
        return self.out(torch.cat([h.max(1).values, mean], -1))

    def folded(self) -> "WordCNN":
        """The same model with the projection applied to the piece table once: the projected
        pieces' mean plus the bias is the projected mean (an identity projection keeps the
        bias and the code path)."""
        folded = WordCNN(self.config, self.out.out_features, self.config.width)
        state = {name: value for name, value in self.state_dict().items()
                 if not name.startswith(("pieces.", "project."))}
        with torch.no_grad():
            state["pieces.weight"] = self.pieces.weight @ self.project.weight.T
        state["project.weight"] = torch.eye(self.config.width)
        state["project.bias"] = self.project.bias.detach().clone()
        folded.load_state_dict(state)
        return folded.eval()


def piece_ids(tokenizer: Tokenizer, words: list[str], unknown_piece: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """`words` split into pieces (flat ids, one offset per word); a word the tokenizer makes
    nothing of (a control character) is the unknown piece."""
    pieces = [encoding.ids or [unknown_piece]
              for encoding in tokenizer.encode_batch(words, add_special_tokens=False)]
    offsets = int64_tensor([0] + [len(p) for p in pieces[:-1]]).cumsum(0)
    return int64_tensor([i for p in pieces for i in p]), offsets


class WordVectors:
    """Each word's vector, made from its pieces the first time a text holds it and kept. Up
    to `capacity` words; past that the store starts afresh, so a stream of ever-new words
    (ids, URLs) cannot grow it without bound. Row 0 is padding.

    A worker's threads share one tier (Beam shares the model per process), so lookups hold
    a lock, and each returns the table its rows index: a table grown or started afresh for
    another thread is a new tensor, and the rows already made are never rewritten."""

    def __init__(self, model: WordCNN, tokenizer: Tokenizer, capacity: int = 2 ** 18):
        self.model = model
        self.tokenizer = tokenizer
        self.capacity = capacity
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self.rows: dict[str, int] = {}
        self.table = torch.zeros(1024, self.model.config.width)

    def lookup(self, texts: list[list[str]]) -> tuple[list[list[int]], torch.Tensor]:
        """The table rows of every text's words, adding the words not seen yet, and the
        table they index."""
        with self._lock:
            known = self.rows.get
            found = [[known(w, 0) for w in words] for words in texts]  # 0: not made yet
            missing = [i for i, row in enumerate(found) if not all(row)]
            if missing:
                new = list(dict.fromkeys(w for i in missing for w in texts[i]
                                         if w not in self.rows))
                if len(self.rows) + len(new) > self.capacity:
                    self._clear()
                    new, missing = list(dict.fromkeys(w for t in texts for w in t)), range(
                        len(texts))
                self._add(new)
                for i in missing:
                    found[i] = [self.rows[w] for w in texts[i]]
            return found, self.table

    @torch.inference_mode()
    def _add(self, words: list[str]) -> None:
        first = len(self.rows) + 1
        needed = first + len(words)
        if needed > len(self.table):  # doubling: each word is copied O(1) times on average
            grown = torch.zeros(max(needed, 2 * len(self.table)), self.table.shape[1])
            grown[:first] = self.table[:first]
            self.table = grown
        config = self.model.config
        self.table[first:needed] = self.model.word_vectors(self.model.piece_means(
            *piece_ids(self.tokenizer, words, config.unknown_piece)))
        self.rows.update(zip(words, range(first, needed)))


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids as one zero-padded tensor (texts x longest) and the mask of real ids."""
    lengths = [len(r) for r in rows]
    mask = torch.arange(max(lengths, default=0) or 1) < torch.tensor(lengths).unsqueeze(1)
    ids = torch.zeros(mask.shape, dtype=torch.long)
    ids[mask] = int64_tensor([i for r in rows for i in r])
    return ids, mask


class WordCnnScorer:
    """The folded CNN and its word store: the logits of texts given as word lists."""

    def __init__(self, model: WordCNN, tokenizer: Tokenizer):
        self.model = model
        self.vectors = WordVectors(model, plain_tokenizer(tokenizer))

    def logits(self, texts: list[list[str]]) -> torch.Tensor:
        """Logits in the texts' order, from passes of PASS texts of similar lengths: a call
        can hold tens of thousands of texts (batch_size x sort_window), whose word vectors
        padded to the longest would take gigabytes."""
        limit = self.model.config.max_words
        rows, table = self.vectors.lookup([words[:limit] for words in texts])
        logits = torch.empty(len(texts), self.model.out.out_features)
        with torch.inference_mode():
            for chunk in batches(len(rows), PASS, length_order(rows)):
                ids, mask = padded([rows[i] for i in chunk])
                logits[chunk] = self.model(table[ids], mask)
        return logits

    def save(self, folder: str) -> None:
        save_file(self.model.state_dict(), os.path.join(folder, WEIGHTS_FILE))
        self.vectors.tokenizer.save(os.path.join(folder, PIECES_FILE))

    @classmethod
    def load(cls, folder: str, config: WordCnnConfig, labels: int) -> "WordCnnScorer":
        model = WordCNN(config, labels, config.width)
        model.load_state_dict(load_file(os.path.join(folder, WEIGHTS_FILE)))
        return cls(model.eval(), Tokenizer.from_file(os.path.join(folder, PIECES_FILE)))
