"""The byte-level proxy model: a small decoder-only transformer over raw UTF-8 bytes, and its presets.

Bytes make the vocabulary 256 and the loss bits per byte, which no tokenizer
choice can move. The model scores documents one by one (``document_bits``):
each is read after the separator that joins documents in training, so its
first byte is predicted in the context it has there. Evaluation trains it
(``evaluation.proxy``); any stage that needs a small language model's bits per
document can load it from here.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from samplemix_spark.models.proxy_presets import PRESETS, SEPARATOR, Preset  # noqa: F401  (read from here too)

LN2 = math.log(2.0)

# Dense bf16 peak FLOP/s of data-centre GPUs, for model FLOPs utilisation.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        attention = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attention.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class ByteLM(nn.Module):
    """GPT-style byte model: learned positions, pre-norm blocks, output tied to the byte embedding."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, preset.d_model)
        self.position = nn.Embedding(preset.context, preset.d_model)
        self.blocks = nn.ModuleList(Block(preset.d_model, preset.n_head) for _ in range(preset.n_layer))
        self.ln = nn.LayerNorm(preset.d_model)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.ln(x) @ self.embed.weight.T

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def flops_per_byte(model: ByteLM, preset: Preset) -> float:
    """Training FLOPs per predicted byte: 6 N for the weights plus the attention scores."""
    return 6.0 * model.n_params() + 12.0 * preset.n_layer * preset.context * preset.d_model


def windows(data: np.ndarray, context: int) -> torch.Tensor:
    """Non-overlapping (context + 1)-byte windows of a byte array: inputs and their next bytes."""
    n = (len(data) - 1) // context
    if n < 1:
        raise ValueError(f"{len(data)} bytes do not fill one window of {context + 1}")
    index = np.arange(n)[:, None] * context + np.arange(context + 1)[None, :]
    return torch.from_numpy(data[index].astype(np.int64))


@dataclass(frozen=True)
class DocumentWindows:
    """Documents cut into (context + 1)-byte windows, each document its own sequence.

    A document is read after the training stream's separator, so its first byte
    is predicted in the context it has in training; the separator's own bytes and
    the padding after a document's last byte are masked out of the loss.
    ``owner`` maps every window to its document.
    """

    windows: torch.Tensor  # (n_windows, context + 1) uint8
    mask: torch.Tensor     # (n_windows, context) float32: 1 where the target is a document byte
    owner: np.ndarray      # (n_windows,) document index
    n_docs: int

    def head(self, n_docs: int) -> "DocumentWindows":
        """The windows of the first ``n_docs`` documents (views, no copy): they come first."""
        end = int(np.searchsorted(self.owner, n_docs))
        return DocumentWindows(self.windows[:end], self.mask[:end], self.owner[:end], min(n_docs, self.n_docs))


def document_windows(texts, context: int, separator: bytes) -> DocumentWindows:
    """Cut each text into windows of its own (see ``DocumentWindows``)."""
    rows, masks, owners = [], [], []
    offsets = np.arange(context + 1)
    for i, text in enumerate(texts):
        sequence = np.frombuffer(separator + text, dtype=np.uint8)
        n_windows = -(-(len(sequence) - 1) // context)
        padded = np.zeros(n_windows * context + 1, dtype=np.uint8)
        padded[:len(sequence)] = sequence
        index = np.arange(n_windows)[:, None] * context + offsets[None, :]
        rows.append(padded[index])
        targets = index[:, 1:]
        masks.append((targets >= len(separator)) & (targets < len(sequence)))
        owners.append(np.full(n_windows, i))
    if not rows:
        return DocumentWindows(torch.zeros((0, context + 1), dtype=torch.uint8), torch.zeros((0, context)),
                               np.zeros(0, dtype=int), 0)
    return DocumentWindows(torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(masks)).float(),
                           np.concatenate(owners), len(texts))


@torch.no_grad()
def document_bits(model: ByteLM, docs: DocumentWindows, batch_size: int, device: torch.device,
                  fixed_shape: bool = False) -> np.ndarray:
    """Per document, the summed next-byte cross-entropy of its bytes, in bits.

    With ``fixed_shape`` every forward pass has exactly ``batch_size`` windows (the
    last padded with zero windows), so every window meets the same kernels and a
    document's bits do not depend on the documents scored with it.
    """
    model.eval()
    per_window = np.zeros(len(docs.windows))
    for start in range(0, len(docs.windows), batch_size):
        batch = docs.windows[start:start + batch_size].to(device).long()
        n = batch.shape[0]
        if fixed_shape and n < batch_size:
            batch = torch.cat([batch, batch.new_zeros(batch_size - n, batch.shape[1])])
        with autocast(device):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 256), batch[:, 1:].reshape(-1), reduction="none")
        masked = loss.view(batch.shape[0], -1)[:n] * docs.mask[start:start + batch_size].to(device)
        per_window[start:start + n] = masked.sum(dim=1).double().cpu().numpy()
    model.train()
    bits = np.zeros(docs.n_docs)
    np.add.at(bits, docs.owner, per_window)
    return bits / LN2


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads (a fixed count keeps CPU results reproducible)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _schedule(step: int, total: int, peak: float) -> float:
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def fit(stream: np.ndarray, preset: Preset, seed: int, device: torch.device,
        on_step: Optional[Callable[[int, int, "ByteLM", torch.Tensor], None]] = None) -> tuple["ByteLM", int]:
    """A fresh model trained on ``stream`` (uint8) for one pass of non-overlapping windows; and its step count.

    The seed fixes the initialisation and the window order, so on CPU with pinned
    threads the same stream gives the same weights. ``on_step(step, steps, model,
    loss)`` runs after every optimiser step (the proxy trainer scores there).
    """
    torch.manual_seed(seed)
    model = ByteLM(preset).to(device)
    generator = torch.Generator().manual_seed(seed)
    data = windows(stream, preset.context)
    order = torch.randperm(len(data), generator=generator)
    steps = max(1, len(data) // preset.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.learning_rate, weight_decay=0.1,
                                  betas=(0.9, 0.95), fused=device.type == "cuda")
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _schedule(step, steps, preset.learning_rate)
        batch = data[order[step * preset.batch_size:(step + 1) * preset.batch_size]].to(device)
        with autocast(device):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 256), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if on_step is not None:
            on_step(step + 1, steps, model, loss)
    return model, steps
