"""Static (model2vec) encoders: a token-embedding table distilled from a transformer folder.

A static model embeds a text as the mean of its tokens' distilled vectors: no
attention, no matrix multiply per token, tens of times faster than the
transformer on a CPU. ``distill_static`` builds one once from a local
sentence-transformer folder (model2vec's distillation: every vocabulary token
through the transformer, PCA, SIF weighting) and stores it under a folder named
by the source's content digest, so a changed source model gets a new folder and
an unchanged one is never distilled twice.

Runs on the driver (distillation, before the UDF is built) and on executors
(``StaticEncoder`` inside the embed UDF). ``model2vec`` is imported lazily, so the
transformer path never loads it; nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from samplemix_spark.errors import ConfigError

log = logging.getLogger(__name__)

# Written beside model2vec's files: which source and settings a folder was distilled from.
PROVENANCE = "samplemix_static.json"
_DIGEST_CHUNK = 1 << 20


def is_static_model(folder: Path) -> bool:
    """True for a model2vec folder (its config.json says ``model_type: model2vec``)."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "model2vec"
    except (ValueError, OSError):
        return False


def folder_digest(folder: Path) -> str:
    """sha256 over every file's relative path and bytes (hidden files and folders left out).

    The content, not the location or modification time, names a distilled model:
    the same checkpoint installed elsewhere or copied finds the same folder.
    """
    digest = hashlib.sha256()
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_DIGEST_CHUNK), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def static_folder(root: Path, source: Path, pca_dims: int) -> Path:
    """Where the static model of ``source`` with ``pca_dims`` dimensions lives under ``root``."""
    return Path(root) / f"static-{pca_dims}d-{folder_digest(source)[:16]}"


def distill_static(source: Path, target: Path, pca_dims: int, source_name: str = "") -> Path:
    """Distil ``source`` (a local transformer folder) into ``target``; a finished ``target`` is kept as is.

    The model is written to a temporary sibling and renamed into place, so a
    killed distillation leaves no half-written model and two processes racing
    on one folder both end with a complete one.
    """
    target = Path(target)
    if is_static_model(target):
        return target
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise ConfigError(f"diversity.encoder 'static' needs model2vec's distillation ({exc}); "
                          "install samplemix-spark with its default dependencies") from exc
    log.info("static encoder: distilling %s into %s (once; about a minute on 2 cores)", source_name or source, target)
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # a per-token progress bar has no place in a job's log
    try:
        model = distill(model_name=str(source), pca_dims=pca_dims)
        model.save_pretrained(str(staging))
        provenance = {"source": source_name or str(source), "source_digest": folder_digest(source),
                      "pca_dims": pca_dims, "vocabulary": int(model.embedding.shape[0]), "dim": int(model.dim)}
        (staging / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
        staging.rename(target)
        log.info("static encoder: distilled %d tokens x %d dimensions in %.1f s", provenance["vocabulary"],
                 provenance["dim"], time.perf_counter() - started)
    except OSError:
        if not is_static_model(target):
            raise
        log.info("static encoder: another process finished %s first; using it", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous
    return target


class StaticEncoder:
    """Mean of distilled token vectors over each text's first ``max_tokens`` tokens, as model2vec encodes.

    ``embed`` has ``TextEncoder.embed``'s signature and returns float32 vectors in
    input order. A text's vector depends on that text alone (model2vec averages
    each text's own tokens), so it is the same whatever batch it arrives in.
    model2vec sets truncation on its shared tokenizer inside every ``encode``
    call, which is not safe from several threads (the embedded engine runs UDFs
    on threads of one interpreter), so each thread gets its own copy of the
    model; the table is a few MB.
    """

    def __init__(self, folder: Path, max_tokens: int) -> None:
        self.folder = Path(folder)
        self.max_tokens = max_tokens
        self._local = threading.local()
        self.dim = int(self._model().dim)

    def _model(self):
        model = getattr(self._local, "model", None)
        if model is None:
            from model2vec import StaticModel

            model = StaticModel.from_pretrained(str(self.folder))
            self._local.model = model
        return model

    def embed(self, texts: Sequence[str], batch_size: int = 1024, normalize: bool = False,
              on_batch: Optional[Callable[[int], object]] = None) -> np.ndarray:
        """Vectors of ``texts``; ``on_batch(n)`` after each batch of ``batch_size`` texts."""
        model = self._model()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            vectors = model.encode(chunk, max_length=self.max_tokens, batch_size=batch_size,
                                   use_multiprocessing=False, normalize=False).astype(np.float32)
            if normalize:
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.where(norms > 0, norms, 1.0)
            out[start:start + len(chunk)] = vectors
            if on_batch is not None:
                on_batch(len(chunk))
        return out
