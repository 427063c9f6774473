"""Transformer text encoders loaded from local folders, shared by quality and diversity.

Runs wherever it is called: on the driver for training, on executors inside
pandas UDFs for scoring and embedding. ``transformers`` is imported eagerly at
module import: its lazy module is not thread-safe, and the embedded engine runs
UDFs on several threads of one interpreter. Only modules that need a model
import this one, so the mixing path never loads torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as transformers_logging

from samplemix_spark.errors import ConfigError

log = logging.getLogger(__name__)
# One progress bar per executor process per model says nothing useful in a job's log.
transformers_logging.disable_progress_bar()

POOLING_MODES = ("auto", "mean", "cls")


def resolve_pooling(model_dir: Path, configured: str = "auto") -> str:
    """``mean`` or ``cls``; ``auto`` follows a sentence-transformers ``1_Pooling`` config, else CLS."""
    if configured != "auto":
        return configured
    pooling_config = Path(model_dir) / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        settings = json.loads(pooling_config.read_text())
        return "mean" if settings.get("pooling_mode_mean_tokens") else "cls"
    return "cls"


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sequence representation: the first token (CLS) or the mask-weighted token mean."""
    if mode == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def task_gpu_index() -> Optional[int]:
    """The GPU Spark assigned to this task (``spark.task.resource.gpu.amount``), if any."""
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - pyspark is a dependency
        return None
    context = TaskContext.get()
    if context is None:
        return None
    gpus = context.resources().get("gpu")
    if gpus and gpus.addresses:
        return int(gpus.addresses[0])
    return context.partitionId() % torch.cuda.device_count() if torch.cuda.is_available() else None


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when available and allowed (on the task's GPU), else CPU."""
    if preference == "cpu" or not torch.cuda.is_available():
        if preference == "cuda":
            raise ConfigError("config key 'device': 'cuda' was requested but no GPU is visible")
        return torch.device("cpu")
    index = task_gpu_index()
    return torch.device("cuda", index if index is not None else 0)


def resolve_precision(precision: str, device: torch.device) -> str:
    """What runs: on CUDA bf16 unless fp16 or fp32 is asked; on CPU exact fp32 unless int8 is asked.

    bf16 and fp16 on a CPU run as fp32, so that a config written for GPU executors
    also runs on CPU ones. int8 is CPU-only and opt-in (models/int8.py).
    """
    if device.type == "cuda":
        if precision == "int8":
            raise ConfigError("precision 'int8' is for CPU executors; on a GPU use auto (bf16), fp16 or fp32")
        return "bf16" if precision == "auto" else precision
    if precision != "int8":
        return "fp32"
    from samplemix_spark.models.int8 import int8_available

    if not int8_available():
        raise ConfigError(f"precision 'int8' needs torch's x86 int8 kernel, which torch {torch.__version__} "
                          "here lacks; use fp32")
    return "int8"


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA by default (fp16 on request); nothing on CPU, where int8 or fp32 is in the weights."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


# A token covers at most this many characters in all but pathological text (see token_ids).
CHARS_PER_TOKEN = 16
# Batches are padded to a multiple of this many tokens, decided per text (see batches).
LENGTH_BUCKET = 32


def _cut_at_whitespace(text: str, limit: int) -> str:
    """``text`` up to the last whitespace before ``limit`` characters (the same object if shorter)."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
    return text[:cut] if cut > 0 else text


class TextEncoder:
    """Tokenizer + transformer + pooling. ``embed`` returns float32 numpy vectors in input order.

    ``precision`` as ``resolve_precision`` reads it. ``model_class`` loads another
    head on the same tokenisation and length buckets (``models.classifier`` passes
    ``AutoModelForSequenceClassification``); ``model`` is one already built, with
    ``model_dir`` giving its tokenizer.
    """

    def __init__(self, model_dir: Path, pooling: str = "auto", max_tokens: int = 512,
                 device: str = "auto", precision: str = "auto", model_class=AutoModel,
                 trust_remote_code: bool = False, model: Optional[torch.nn.Module] = None) -> None:
        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True,
                                                       trust_remote_code=trust_remote_code)
        self.model = model if model is not None else model_class.from_pretrained(
            str(self.model_dir), local_files_only=True, trust_remote_code=trust_remote_code)
        self.pooling = resolve_pooling(self.model_dir, pooling)
        self.max_tokens = max_tokens
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device)
        if self.precision == "int8":
            from samplemix_spark.models.int8 import quantize_linear_layers

            quantize_linear_layers(self.model)
        elif self.device.type == "cpu":
            from samplemix_spark.models.fixed_rows import fix_linear_rows

            fix_linear_rows(self.model)  # exact fp32: a row's output must not depend on its batch-mates
        # On CPU torch sizes its thread pool from OMP_NUM_THREADS, which classic Spark sets
        # to spark.task.cpus for each Python worker, so tasks do not oversubscribe cores.
        self.model.to(self.device).eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def token_ids(self, texts: Sequence[str]) -> list[dict]:
        """Exact encodings (ids, type ids, mask) of the first ``max_tokens`` tokens of each text, unpadded.

        Tokenizing a whole 70,000-character document to keep 128 tokens costs more
        than the GPU forward pass, so each text is first cut at a whitespace near
        ``CHARS_PER_TOKEN * max_tokens`` characters. A word-splitting tokenizer
        gives the cut text the same leading tokens; a text whose cut did not fill
        the window (very long words) is tokenized whole, so the ids are exact.
        """
        cut = [_cut_at_whitespace(text, CHARS_PER_TOKEN * self.max_tokens) for text in texts]
        encodings = self._encode(cut)
        short = [i for i, (c, t, e) in enumerate(zip(cut, texts, encodings))
                 if c is not t and len(e["input_ids"]) < self.max_tokens]
        for i, encoding in zip(short, self._encode([texts[i] for i in short])):
            encodings[i] = encoding
        return encodings

    def _encode(self, texts: list[str]) -> list[dict]:
        if not texts:
            return []
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)
        return [{key: values[i] for key, values in batch.items()} for i in range(len(texts))]

    def padded(self, encodings: list[dict], length: Optional[int] = None) -> dict:
        """Tensors on the model's device, padded to ``length`` (default: the longest encoding)."""
        length = length or max(len(e["input_ids"]) for e in encodings)
        batch = self.tokenizer.pad(encodings, padding="max_length", max_length=length, return_tensors="pt")
        return {key: value.to(self.device) for key, value in batch.items()}

    def tokenize(self, texts: Sequence[str]) -> dict:
        """A padded batch of the texts' first ``max_tokens`` tokens (for training, where batches are fixed)."""
        return self.padded(self.token_ids(texts))

    def bucket(self, n_tokens: int) -> int:
        """The padded length of an encoding of ``n_tokens``: the next multiple of LENGTH_BUCKET, at most max_tokens."""
        return min(self.max_tokens, -(-n_tokens // LENGTH_BUCKET) * LENGTH_BUCKET)

    def batches(self, texts: Sequence[str], batch_size: int) -> Iterator[tuple[np.ndarray, dict]]:
        """(indices, padded batch) covering ``texts``, each batch padded to its texts' own length bucket.

        A text's padded length depends only on the text, never on its batch-mates,
        so the shapes its forward pass sees, and therefore its vector, are the
        same whatever the partitioning or Arrow batch it arrives in.
        """
        encodings = self.token_ids(texts)
        buckets = np.array([self.bucket(len(e["input_ids"])) for e in encodings])
        for length in sorted(set(buckets.tolist()), reverse=True):
            members = np.flatnonzero(buckets == length)
            for start in range(0, len(members), batch_size):
                index = members[start:start + batch_size]
                yield index, self.padded([encodings[i] for i in index], length)

    def forward(self, batch: dict) -> torch.Tensor:
        """Pooled representations of a tokenized batch (gradients follow the caller's mode)."""
        with autocast(self.device, self.precision):
            hidden = self.model(**batch).last_hidden_state
        return pool(hidden.float(), batch["attention_mask"], self.pooling)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = False,
              on_batch: Optional[Callable[[int], object]] = None) -> np.ndarray:
        """Vectors of ``texts``; ``on_batch(n)`` after each forward pass, for progress inside a long call."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for index, batch in self.batches(texts, batch_size):
            vectors = self.forward(batch)
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            out[index] = vectors.cpu().numpy()
            if on_batch is not None:
                on_batch(len(index))
        return out
