"""A character-level language model: a small causal Transformer on Debian's `fortunes` texts.

The corpus is the 43 plain-text files of Debian's package `fortunes` (version 1:1.99.1-7.3, 2,576,674
bytes of UTF-8, nearly all ASCII; modelled byte by byte), read from /usr/share/games/fortunes or the
LRLAB_FORTUNES setting and checked against its SHA-256: another version of the package is refused with the
remedy, never trained on silently.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lrlab.data.fashion_mnist import DataError
from lrlab.data.loaders import DataLoaders
from lrlab.data.workloads import Workload

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_SHA256 = "fbc2d796dde8ea64a51345ce4c18ff486a778a2d2259603987073bedb3fc3cd7"
CONTEXT, VOCAB = 64, 256  # characters per sequence; bytes (the texts are UTF-8, mostly ASCII)


def fortunes_text(folder: str | os.PathLike | None = None) -> bytes:
    """The corpus: the folder's plain-text files (not the .dat/.u8 indexes) in name order, verified.

    Raises:
        DataError: no such folder, or content that is not the checksummed version."""
    d = Path(folder or os.environ.get("LRLAB_FORTUNES") or FORTUNES_DIR)
    remedy = "install Debian's package: apt-get install fortunes (version 1:1.99.1-7.3), or set LRLAB_FORTUNES"
    if not d.is_dir():
        raise DataError(f"the fortunes corpus is not in {d}: {remedy}")
    names = sorted(n for n in os.listdir(d) if (d / n).is_file() and not n.endswith((".dat", ".u8")))
    text = b"".join((d / n).read_bytes() for n in names)
    digest = hashlib.sha256(text).hexdigest()
    if digest != FORTUNES_SHA256:
        raise DataError(f"the fortunes corpus in {d} has SHA-256 {digest[:16]}..., not the expected version: {remedy}")
    return text


def sequences(text: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows of CONTEXT characters and the same windows shifted by one (the targets)."""
    codes = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
    n = (len(codes) - 1) // CONTEXT
    return codes[: n * CONTEXT].view(n, CONTEXT), codes[1 : n * CONTEXT + 1].view(n, CONTEXT)


TRAIN_BYTES, VALID_BYTES = 800_000, 130_000  # what two CPU cores train on in about a minute per epoch


def fortunes_data(seed: int, batch_size: int) -> DataLoaders:
    """The corpus's first 800 kB to train, its last 130 kB (other files) to validate."""
    text = fortunes_text()
    (x, y), (xv, yv) = sequences(text[:TRAIN_BYTES]), sequences(text[-VALID_BYTES:])
    return DataLoaders.from_tensors(x, y, xv, yv, batch_size, seed=seed)


class CharTransformer(nn.Module):
    """A causal Transformer over characters: token and position embeddings, pre-norm encoder layers with a
    causal mask, a final LayerNorm and a linear head to the next character's logits."""

    def __init__(self, d_model: int = 128, n_layers: int = 2, n_heads: int = 4) -> None:
        super().__init__()
        self.embed, self.position = nn.Embedding(VOCAB, d_model), nn.Embedding(CONTEXT, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, VOCAB)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        t = codes.shape[1]
        h = self.embed(codes) + self.position(torch.arange(t, device=codes.device))
        return self.head(self.norm(self.blocks(h, mask=self.mask[:t, :t], is_causal=True)))


def next_char_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every position's next character (nats)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def unigram_bpc(dls: DataLoaders) -> float:
    """Bits per character of the training set's character frequencies (add-one smoothed) on the valid set."""
    counts = torch.bincount(dls.train.ds.labels.flatten(), minlength=VOCAB).double() + 1
    log_p = (counts / counts.sum()).log()
    valid = dls.valid.ds.labels.flatten()
    return float(-log_p[valid].mean() / math.log(2))


WORKLOADS = [
    Workload("charlm", "Debian's fortunes (800 kB of its 2.6 MB), a 2-layer causal Transformer (0.45M), bits/char",
             fortunes_data, CharTransformer, next_char_loss, "bpc", epochs=3, batch_size=64, target=2.9,
             baseline=unigram_bpc, eval_subset=512),
]  # fmt: skip
