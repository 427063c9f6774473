"""The proxy trainer: a fresh byte-level model (``models.byte_lm``) trained from scratch and scored.

Runs wherever a proxy job runs: on the driver (one proxy after another) or in a
Spark task (one proxy per task).

Deterministic on CPU: the seed fixes the initialisation and the data order, and
the thread count is pinned for the run (``torch.set_num_threads``), so the same
stream and seed give the same losses. On CUDA the forward pass runs in bf16
autocast and AdamW uses its fused kernel; the trainer reports bytes/s and the
model FLOPs utilisation against the device's peak.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from samplemix_spark.models.byte_lm import (  # noqa: F401  (PRESETS and Preset are read from here too)
    LN2,
    PEAK_BF16,
    PRESETS,
    SEPARATOR,
    ByteLM,
    Preset,
    autocast,
    document_bits,
    document_windows,
    fit,
    flops_per_byte,
    pinned_threads,
)


@dataclass
class TrainResult:
    scores: list  # (step, bytes_seen, domain, doc_id, bytes, bits, in_step_subset)
    steps: int
    seconds: float
    bytes_per_s: float
    mfu: Optional[float]
    n_params: int


SCORE_COLUMNS = ["step", "tokens_seen", "domain", "doc_id", "bytes", "bits", "subset"]
EVAL_BATCH = 128


class _Scorer:
    """Scores the held-out documents of every domain: the step subset, or all at the final step."""

    def __init__(self, held_out: dict, context: int, device: torch.device) -> None:
        self.held_out, self.device = held_out, device
        self.every = {d: document_windows(docs.texts, context, SEPARATOR) for d, docs in sorted(held_out.items())}
        self.subset = {d: self.every[d].head(docs.n_step) for d, docs in sorted(held_out.items())}

    def rows(self, model: ByteLM, step: int, seen: int, final: bool) -> list:
        rows = []
        for domain, docs in sorted(self.held_out.items()):
            bits = document_bits(model, (self.every if final else self.subset)[domain], EVAL_BATCH, self.device)
            rows += [(step, seen, domain, docs.doc_ids[i], len(docs.texts[i]), float(bits[i]), i < docs.n_step)
                     for i in range(len(bits))]
        return rows


def train(stream: np.ndarray, held_out: dict, preset: Preset, seed: int, threads: int = 2,
          device: str = "auto", log: Optional[Callable[[str], None]] = None,
          on_evaluation: Optional[Callable[[int, int, float], None]] = None) -> TrainResult:
    """Train a fresh proxy on ``stream`` (uint8, budget + 1 bytes) and score it on the held-out documents.

    ``held_out``: domain -> ``holdout.DomainDocs``. At every evaluation step the
    step subset is scored, at the final step every document; ``scores`` has one
    row per scored document and step. ``on_evaluation(step, steps, seconds)``
    after each evaluation, with the seconds since training started.
    """
    chosen = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    scorer, scores = _Scorer(held_out, preset.context, chosen), []

    def evaluate(step: int, steps: int, model: ByteLM, loss: torch.Tensor) -> None:
        if step not in {max(1, round(steps * (i + 1) / preset.evaluations)) for i in range(preset.evaluations)}:
            return
        scores.extend(scorer.rows(model, step, step * preset.batch_size * preset.context, final=step == steps))
        if log:
            log(f"step {step}/{steps}: train loss {float(loss.detach()) / LN2:.3f} bpb")
        if on_evaluation:
            on_evaluation(step, steps, time.perf_counter() - started)

    with pinned_threads(threads):
        started = time.perf_counter()
        model, steps = fit(stream, preset, seed, chosen, evaluate)
        if chosen.type == "cuda":
            torch.cuda.synchronize(chosen)  # kernels still queued belong to the timed steps
        seconds = time.perf_counter() - started
    rate = steps * preset.batch_size * preset.context / seconds
    return TrainResult(scores, steps, seconds, rate, _mfu(model, preset, rate, chosen), model.n_params())


def _mfu(model: ByteLM, preset: Preset, bytes_per_s: float, device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peak = next((flops for key, flops in PEAK_BF16.items() if key in name), None)
    return flops_per_byte(model, preset) * bytes_per_s / peak if peak else None


def unigram_bits_per_byte(train_bytes: np.ndarray, held_out: np.ndarray) -> float:
    """Cross-entropy of a byte-unigram model (add-one smoothed) fitted on ``train_bytes``, in bits per byte."""
    counts = np.bincount(train_bytes, minlength=256).astype(float) + 1.0
    log_p = np.log2(counts / counts.sum())
    return float(-log_p[held_out[1:]].mean())
