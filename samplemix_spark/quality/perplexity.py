"""``quality.method: perplexity``: q(x) from how well a model of trusted text predicts a document (CCNet style).

A reference model rewards resemblance to the reference text, not quality in
itself: a document unlike the trusted domains scores low however good it is.

Driver side, once per warehouse (``reference_models``): the documents of the
``quality.perplexity.reference`` domains, and the valid rows of the files in
``quality.perplexity.sources`` (read with ingest's format and column mapping),
are split into two halves by a hash of their text
(``hashing.PERPLEXITY_HALF``) and a byte-level model with the proxy trainer's
architecture (``models.byte_lm``, preset ``quality.perplexity.preset``) is
trained on each half's text in a hashed order, up to the preset's byte budget.
Their weights go to the ``perplexity_models`` table, so a refresh scores new
documents with the same models (other settings, or ``--force`` on a changed
reference, train them again).

Executor side (``bits_per_byte_column``): every document is scored by the model
that did not train on its half. Halves follow the text, not the doc_id, so a
reference document, and any document whose text is also in ``sources`` or in the
reference under another id, is always scored by a model that never saw that
text. The score covers a window of ``doc_bytes`` bytes placed by a hash of the
doc_id (``hashing.PERPLEXITY_WINDOW``; the whole text when shorter), so a web
page's fixed header is not all that is read; forward only, in fixed-shape batches
so a score never depends on its batch-mates. The quality table keeps the bits per
byte (``bpb``) and the half (``half``); the mix turns them into q per half
(``mixing.weights.perplexity_q``), so an offset between the two models moves no
document across a bucket border.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from typing import Iterator, Optional

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import PerplexityConfig, SampleMixConfig
from samplemix_spark.engine.progress import Progress
from samplemix_spark.errors import InputError
from samplemix_spark.hashing import PERPLEXITY_HALF, PERPLEXITY_ORDER, PERPLEXITY_WINDOW, uniform
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.files import snapshot_files
from samplemix_spark.tables.per_document import PerDocumentStep

log = logging.getLogger(__name__)

MODELS_TABLE = "perplexity_models"
MODELS_SCHEMA = "half int, settings string, weights binary"
SCORE_WINDOWS = 64  # windows per forward pass when scoring (a fixed shape)
TRAIN_THREADS = 2   # a fixed count keeps the trained weights reproducible on CPU


HALVES_BY = "text"  # part of the models' settings key: models split by doc_id are not reused


def half_column(seed: int, hash_scheme: str) -> Column:
    """0 or 1 from the text: the reference model that trains on a text (the other one scores it)."""
    return (uniform(F.col("text"), seed, PERPLEXITY_HALF, hash_scheme) >= 0.5).cast("int")


def window_column(seed: int, hash_scheme: str) -> Column:
    """Where a document's scored window starts, as a share of its bytes beyond ``doc_bytes``."""
    return uniform(F.col("doc_id"), seed, PERPLEXITY_WINDOW, hash_scheme)


def _settings_key(settings: PerplexityConfig, hash_scheme: str) -> str:
    """What decides the reference models; stored with them, and compared before they are reused."""
    return repr((sorted(settings.reference), sorted(settings.sources), settings.preset, settings.seed, hash_scheme,
                 HALVES_BY))


def _training_bytes(documents: DataFrame, need: int, seed: int, hash_scheme: str) -> np.ndarray:
    """``need`` bytes of one half's reference text in hashed order (cycled if it holds fewer).

    Only the rows under a hash threshold reach the driver: about twice the budget.
    """
    from samplemix_spark.models.proxy_presets import SEPARATOR

    keyed = documents.select("doc_id", "text", uniform(F.col("doc_id"), seed, PERPLEXITY_ORDER,
                                                       hash_scheme).alias("u"))
    total = keyed.agg(F.sum(F.octet_length("text") + len(SEPARATOR)).alias("b")).collect()[0]["b"] or 0
    if not total:
        raise InputError("quality.perplexity.reference: a half of the reference documents is empty; "
                         "name domains with more documents")
    threshold = min(1.0, 2.0 * need / total)
    while True:
        rows = keyed.where(F.col("u") < threshold).select("u", "doc_id", "text").collect()
        data = b"".join(r["text"].encode("utf-8") + SEPARATOR for r in sorted(rows, key=lambda r: (r["u"],
                                                                                                   r["doc_id"])))
        if len(data) >= need or threshold >= 1.0:
            break
        threshold = min(1.0, 2.0 * threshold)
    return np.frombuffer((data * -(-need // len(data)))[:need], dtype=np.uint8)


def reference_models(spark: SparkSession, store: TableStore, cfg: SampleMixConfig) -> tuple:
    """The files of the ``perplexity_models`` table, training the two models first when none fit the settings."""
    settings, scheme = cfg.quality.perplexity, store.hash_scheme
    key = _settings_key(settings, scheme)
    stored = store.read_if_exists(MODELS_TABLE)
    if stored is not None and {r["settings"] for r in stored.select("settings").distinct().collect()} == {key}:
        return tuple(snapshot_files(store, MODELS_TABLE))
    reference = _reference_text(spark, store, cfg)
    rows = [(half, key, _train_half(reference.where(half_column(settings.seed, scheme) == half), settings, scheme,
                                    half)) for half in (0, 1)]
    store.write(spark.createDataFrame(pd.DataFrame(rows, columns=["half", "settings", "weights"]), MODELS_SCHEMA),
                MODELS_TABLE)
    return tuple(snapshot_files(store, MODELS_TABLE))


def _reference_text(spark: SparkSession, store: TableStore, cfg: SampleMixConfig) -> DataFrame:
    """doc_id and text of the reference: the ``reference`` domains' documents and the ``sources``' valid rows."""
    settings = cfg.quality.perplexity
    documents = store.read("documents")
    present = {r["domain"] for r in documents.select("domain").distinct().collect()}
    missing = sorted(set(settings.reference) - present)
    if missing:
        raise InputError(f"quality.perplexity.reference names {', '.join(missing)}, which the documents do not "
                         f"hold; domains: {', '.join(sorted(present))}")
    reference = documents.where(F.col("domain").isin(settings.reference)).select("doc_id", "text")
    if not settings.sources:
        return reference
    from samplemix_spark.ingest.documents import read_raw

    given = dataclasses.replace(cfg.ingest, sources=list(settings.sources), holdout_sources=[], holdout_fraction=0.0)
    raw = read_raw(spark, given, read_domain=False)
    valid = raw.where(F.col("parse_error").isNull() & F.col("text").isNotNull() & (F.trim("text") != ""))
    # Keyed as ingest keys a text without an id: its hash orders and splits it like a document.
    outside = valid.select(F.substring(F.sha2("text", 256), 1, 32).alias("doc_id"), "text")
    return reference.unionByName(outside)


def _train_half(documents: DataFrame, settings: PerplexityConfig, hash_scheme: str, half: int) -> bytes:
    import torch

    from samplemix_spark.models.byte_lm import PRESETS, fit, pinned_threads

    preset = PRESETS[settings.preset]
    stream = _training_bytes(documents, preset.budget_bytes + 1, settings.seed, hash_scheme)
    log.info("quality: training reference model %d/2 (preset %s, %d bytes)", half + 1, preset.name, len(stream))
    with pinned_threads(TRAIN_THREADS):
        model, _ = fit(stream, preset, settings.seed + half, torch.device("cpu"))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def _version(files: tuple) -> str:
    """A short hash of the models' file names: a new training writes new files."""
    return hashlib.blake2b(repr(sorted(files)).encode(), digest_size=6).hexdigest()


def _load_models(files: tuple, preset_name: str, device: str) -> dict:
    """half -> model, read from the ``perplexity_models`` files (executor side, once per process)."""
    import pyarrow.parquet as pq
    import torch

    from samplemix_spark.models.byte_lm import PRESETS, ByteLM
    from samplemix_spark.models.encoder import pick_device
    from samplemix_spark.tables.files import filesystem_for

    models, chosen = {}, pick_device(device)
    for path in files:
        filesystem, inner = filesystem_for(path)
        table = pq.read_table(inner, columns=["half", "weights"], filesystem=filesystem)
        for half, weights in zip(table.column("half").to_pylist(), table.column("weights").to_pylist()):
            model = ByteLM(PRESETS[preset_name])
            model.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
            models[half] = model.to(chosen).eval()
    return models


def scored_window(text: str, start: float, doc_bytes: int) -> bytes:
    """The ``doc_bytes`` bytes of ``text`` from ``start`` (a share of the bytes beyond the window)."""
    data = text.encode("utf-8")
    offset = int(start * max(0, len(data) - doc_bytes))
    return data[offset:offset + doc_bytes]


def bits_per_byte(models: dict, texts: list, halves: list, starts: list, context: int, doc_bytes: int) -> np.ndarray:
    """Each text's bits per byte over its window (``scored_window``), under the model of the other half."""
    from samplemix_spark.models.byte_lm import SEPARATOR, document_bits, document_windows

    result = np.zeros(len(texts))
    for half in (0, 1):
        index = [i for i, h in enumerate(halves) if h == half]
        if not index:
            continue
        data = [scored_window(texts[i], starts[i], doc_bytes) for i in index]
        model = models[1 - half]
        bits = document_bits(model, document_windows(data, context, SEPARATOR), SCORE_WINDOWS,
                             next(model.parameters()).device, fixed_shape=True)
        result[index] = bits / np.array([len(d) for d in data])
    return result


def bits_per_byte_column(text: Column, half: Column, start: Column, files: tuple, settings: PerplexityConfig,
                         device: str, progress: Optional[Progress] = None) -> Column:
    """Bits per byte per document; built on the driver (its closure holds file names), run on executors."""

    @F.pandas_udf("double")
    def score(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        from samplemix_spark.models.proxy_presets import PRESETS
        from samplemix_spark.models.cache import cached

        models = cached(("perplexity", files, device), lambda: _load_models(files, settings.preset, device))
        for texts, halves, starts in batches:
            scores = bits_per_byte(models, texts.tolist(), halves.tolist(), starts.tolist(),
                                   PRESETS[settings.preset].context, settings.doc_bytes)
            if progress is not None:
                progress.add(len(texts))
            yield pd.Series(scores)

    return score(text, half, start)


class PerplexityQuality(PerDocumentStep):
    """Write the quality table with each document's bits per byte under the reference models (see the module doc)."""

    name = "quality"
    source, output = "documents", "quality"
    reports_progress = True

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        settings = self.cfg.quality.perplexity
        files = reference_models(spark, store, self.cfg)
        half = half_column(settings.seed, store.hash_scheme)
        start = window_column(settings.seed, store.hash_scheme)
        bpb = bits_per_byte_column(F.col("text"), half, start, files, settings, self.cfg.quality.device, progress)
        return rows.select("doc_id", F.lit(None).cast("int").alias("quality"),
                           F.lit(None).cast("double").alias("quality_expected"), bpb.alias("bpb"), half.alias("half"),
                           F.lit("perplexity").alias("method"), F.lit(f"byte_lm_{settings.preset}").alias("model_id"),
                           F.lit(_version(files)).alias("model_version"))
