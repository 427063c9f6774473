"""``samplemix train-quality``: fit the ordinal quality evaluator and report its metrics.

Driver side. Labelled rows are read with Spark, their text cut to what the
encoder reads, and collected in bounded chunks; training runs in
torch on the driver's GPU when present, else on its CPU. The held-out split is
a hash of the text, so the same labels always give the same split.

With ``quality.train.compare`` the job also trains, for the report only, the
plain 11-class classification head and the other training mode, so one run
reproduces the paper's ordinal-vs-classification comparison (Table 2) and the
fine-tuned-vs-frozen-encoder comparison on the user's own data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import QualityTrainConfig, SampleMixConfig
from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.hashing import LABEL_SAMPLE, uniform
from samplemix_spark.ingest.sources import read_sources
from samplemix_spark.models.encoder import TextEncoder
from samplemix_spark.models.paths import resolve_local_path
from samplemix_spark.quality import ordinal
from samplemix_spark.quality.checkpoint import CHECKPOINT_CONFIG, HEAD_FILE, ENCODER_DIR
from samplemix_spark.quality.metrics import constant_baseline, quality_metrics
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.driver_reads import staged_chunks

log = logging.getLogger(__name__)

ANNOTATIONS_TABLE = "table:annotations"


@dataclass
class TrainedVariant:
    mode: str
    head: str
    metrics: dict
    loss_history: list
    seconds: float


# Label text is cut in Spark to this many characters per token the encoder reads: it never sees more,
# and a token of English text spans about 4 characters.
CHARS_PER_TOKEN = 16


def load_labels(spark: SparkSession, store: TableStore, cfg: QualityTrainConfig) -> pd.DataFrame:
    """text (cut to what the encoder reads), integer score 0..10 and digest of every labelled row.

    Rows arrive in chunks of at most ``tables.collect_chunk_mb`` (``tables.driver_reads``) and are
    ordered by the digest of their full text, so training sees the same order on every engine.
    Invalid labels are refused.
    """
    if cfg.labels == [ANNOTATIONS_TABLE]:
        frame, text_column, score_column = store.read("annotations"), "text", "score"
    else:
        frame = read_sources(spark, cfg.labels, cfg.format)
        text_column, score_column = cfg.text_column, cfg.score_column
    score = (sum((F.col(c) for c in cfg.dimension_columns[1:]), F.col(cfg.dimension_columns[0]))
             if cfg.dimension_columns and cfg.labels != [ANNOTATIONS_TABLE] else F.col(score_column))
    text = F.col(text_column).cast("string")
    cut = F.substring(text, 1, cfg.max_tokens * CHARS_PER_TOKEN)
    try:
        frame, total_bytes = _bounded(frame, text_column, cut, cfg)
        selected = frame.select(cut.alias("text"), score.cast("double").alias("score"),
                                F.substring(F.sha2(F.coalesce(text, F.lit("")), 256), 1, 16).alias("digest"))
        labels = staged_chunks(store, selected, "quality_labels", F.col("digest"), total_bytes,
                               "train-quality").gather("text", "score", "digest")
    except Exception as exc:  # noqa: BLE001 - engines raise different classes
        raise InputError(f"quality.train.labels: cannot read text {text_column!r} and score "
                         f"{score_column!r} from {cfg.labels}: {str(exc).splitlines()[0][:200]}") from exc
    bad = labels["text"].isna() | labels["score"].isna() | ~labels["score"].between(0, 10) \
        | (labels["score"] % 1 != 0)
    if bad.any():
        raise InputError(f"quality.train.labels: {int(bad.sum())} of {len(labels)} rows have no text or a "
                         "score that is not an integer in 0..10")
    if len(labels) < 20:
        raise InputError(f"quality.train.labels: {len(labels)} labelled rows; at least 20 are needed")
    labels = labels.sort_values(["digest", "score"], kind="stable").reset_index(drop=True)
    return labels.assign(score=labels["score"].astype(int))


# Bytes per label row beyond its text in the size estimate: the score, the digest, Arrow offsets.
_LABEL_ROW_BYTES = 40


def _bounded(frame: DataFrame, text_column: str, cut: Column, cfg: QualityTrainConfig) -> tuple[DataFrame, float]:
    """At most about ``max_labels`` rows (a hashed sample by text, so the driver never holds every label), and
    the bytes they bring to the driver."""
    row = frame.agg(F.count(F.lit(1)).alias("rows"),
                    F.sum(F.coalesce(F.octet_length(cut), F.lit(0))).alias("bytes")).collect()[0]
    total, text_bytes = row["rows"], float(row["bytes"] or 0) + _LABEL_ROW_BYTES * row["rows"]
    if total <= cfg.max_labels:
        return frame, text_bytes
    fraction = cfg.max_labels / total
    log.info("train-quality: %d labelled rows; training on a hashed sample of about %d (quality.train.max_labels)",
             total, cfg.max_labels)
    # A null text hashes as "" so the row can still be drawn and refused as a bad label below.
    text = F.coalesce(F.col(text_column).cast("string"), F.lit(""))
    return frame.filter(uniform(text, cfg.seed, LABEL_SAMPLE, "v2") < F.lit(fraction)), text_bytes * fraction


def text_digests(texts: pd.Series) -> pd.Series:
    """The first 16 hex digits of SHA-256(text): the digest ``load_labels`` computes in Spark."""
    return pd.Series([hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts], index=texts.index)


def holdout_from_digests(digests: pd.Series, fraction: float) -> np.ndarray:
    """True for held-out rows: the digest read as a number in [0, 1) below ``fraction``."""
    return np.asarray([int(d, 16) / 2**64 for d in digests]) < fraction


def holdout_mask(texts: pd.Series, fraction: float) -> np.ndarray:
    """True for held-out rows: the first 8 bytes of SHA-256(text) below ``fraction``."""
    return holdout_from_digests(text_digests(texts), fraction)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _predict(logits_fn: Callable, n: int, head: str, batch_size: int) -> np.ndarray:
    scores = []
    with torch.inference_mode():
        for index in range(0, n, batch_size):
            probabilities = ordinal.class_probabilities(logits_fn(slice(index, index + batch_size)), head)
            scores.append(ordinal.predict(probabilities)[0].cpu().numpy())
    return np.concatenate(scores)


def train_frozen_head(train_x: torch.Tensor, train_y: torch.Tensor, head: str,
                      cfg: QualityTrainConfig) -> tuple[torch.nn.Linear, list]:
    """Fit a head on fixed embeddings; returns the head and the mean loss per epoch."""
    torch.manual_seed(cfg.seed)
    layer = ordinal.make_head(train_x.shape[1], head)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=cfg.head_learning_rate)
    generator = torch.Generator().manual_seed(cfg.seed)
    history = []
    for _ in range(cfg.head_epochs):
        losses = []
        for index in _batches(len(train_x), max(cfg.batch_size, 64), generator):
            loss = ordinal.head_loss(layer(train_x[index]), train_y[index], head)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
    return layer, history


def train_finetuned(encoder: TextEncoder, texts: list[str], labels: torch.Tensor, head: str,
                    cfg: QualityTrainConfig) -> tuple[torch.nn.Linear, list]:
    """Train encoder and head together; returns the head (the encoder is trained in place)."""
    torch.manual_seed(cfg.seed)
    layer = ordinal.make_head(encoder.dim, head).to(encoder.device)
    parameters = list(encoder.model.parameters()) + list(layer.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(cfg.seed)
    encoder.model.train()
    history = []
    for epoch in range(cfg.epochs):
        losses = []
        for index in _batches(len(texts), cfg.batch_size, generator):
            batch = encoder.tokenize([texts[i] for i in index])
            loss = ordinal.head_loss(layer(encoder.forward(batch)), labels[index].to(encoder.device), head)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
        log.info("train-quality: finetune/%s epoch %d loss %.4f", head, epoch + 1, history[-1])
    encoder.model.eval()
    return layer, history


def _new_encoder(cfg: QualityTrainConfig) -> TextEncoder:
    path = resolve_local_path(cfg.encoder, "quality.train.encoder")
    return TextEncoder(path, pooling=cfg.pooling, max_tokens=cfg.max_tokens, device=cfg.device)


def _finetuned_logits(encoder: TextEncoder, layer: torch.nn.Linear, texts: list[str]) -> Callable:
    def logits(rows: slice) -> torch.Tensor:
        return layer(encoder.forward(encoder.tokenize(texts[rows])))
    return logits


class QualityTrainer:
    """Train the configured evaluator (and the comparison variants), save the checkpoint."""

    def __init__(self, cfg: QualityTrainConfig) -> None:
        self.cfg = cfg
        self._frozen_embeddings = None

    def run(self, labels: pd.DataFrame) -> dict:
        digests = labels["digest"] if "digest" in labels else text_digests(labels["text"])
        test = holdout_from_digests(digests, self.cfg.holdout_fraction)
        if test.all() or not test.any():
            raise InputError("quality.train.holdout_fraction leaves no training or no held-out rows")
        train_texts, test_texts = labels["text"][~test].tolist(), labels["text"][test].tolist()
        train_y = torch.tensor(labels["score"][~test].to_numpy())
        test_y = labels["score"][test].to_numpy()
        log.info("train-quality: %d training rows, %d held out", len(train_texts), len(test_texts))
        variants, saved = [], []
        for mode in self._modes():
            for head in self._heads():
                keep = mode == self.cfg.mode and head == "ordinal"
                started = time.perf_counter()
                layer, history, predicted, encoder = self._train(mode, head, train_texts, train_y, test_texts)
                variants.append(TrainedVariant(mode, head, quality_metrics(predicted, test_y), history,
                                               time.perf_counter() - started))
                log.info("train-quality: %s/%s held-out %s", mode, head, _fmt(variants[-1].metrics))
                if keep:
                    self._save(layer, encoder, mode, len(train_texts), len(test_texts))
                    saved = predicted.tolist()
        report = {"baseline_constant": constant_baseline(train_y.numpy(), test_y),
                  "variants": [asdict(v) for v in variants], "n_train": len(train_texts), "n_test": len(test_texts),
                  "saved": {"mode": self.cfg.mode, "head": "ordinal", "heldout_predictions": saved}}
        (Path(self.cfg.output) / "metrics.json").write_text(json.dumps(report, indent=2))
        return report

    def _modes(self) -> list[str]:
        others = [m for m in ("finetune", "frozen") if m != self.cfg.mode]
        return [self.cfg.mode, *others] if self.cfg.compare else [self.cfg.mode]

    def _heads(self) -> list[str]:
        return list(ordinal.HEADS) if self.cfg.compare else ["ordinal"]

    def _train(self, mode, head, train_texts, train_y, test_texts):
        encoder = _new_encoder(self.cfg)
        if mode == "frozen":
            if self._frozen_embeddings is None:  # both heads train on the same embeddings
                self._frozen_embeddings = (torch.from_numpy(encoder.embed(train_texts, self.cfg.batch_size)),
                                           torch.from_numpy(encoder.embed(test_texts, self.cfg.batch_size)))
            train_x, test_x = self._frozen_embeddings
            layer, history = train_frozen_head(train_x, train_y, head, self.cfg)
            predicted = _predict(lambda rows: layer(test_x[rows]), len(test_texts), head, 256)
        else:
            layer, history = train_finetuned(encoder, train_texts, train_y, head, self.cfg)
            predicted = _predict(_finetuned_logits(encoder, layer, test_texts), len(test_texts), head,
                                 self.cfg.batch_size)
        return layer, history, predicted, encoder

    def _save(self, layer: torch.nn.Linear, encoder: TextEncoder, mode: str, n_train: int, n_test: int) -> None:
        out = Path(self.cfg.output)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        torch.save(layer.cpu().state_dict(), out / HEAD_FILE)
        encoder_location = self.cfg.encoder
        if mode == "finetune":
            encoder.model.save_pretrained(out / ENCODER_DIR)
            encoder.tokenizer.save_pretrained(out / ENCODER_DIR)
            encoder_location = ENCODER_DIR
        settings = {"format_version": 1, "head": "ordinal", "mode": mode, "encoder": encoder_location,
                    "pooling": encoder.pooling, "max_tokens": self.cfg.max_tokens, "hidden_size": encoder.dim,
                    "n_train": n_train, "n_test": n_test, "seed": self.cfg.seed}
        (out / CHECKPOINT_CONFIG).write_text(json.dumps(settings, indent=2))
        log.info("train-quality: checkpoint written to %s", out)


def _fmt(metrics: dict) -> str:
    return (f"ACC {metrics['acc']:.2f}  MAE {metrics['mae']:.3f}  MSE {metrics['mse']:.3f}  "
            f"CACC {metrics['cacc']:.2f}")


def format_metrics(report: dict) -> str:
    """The held-out metrics of every variant against the constant baseline, as a table."""
    lines = [f"{'variant':<24}{'ACC':>8}{'MAE':>8}{'MSE':>8}{'CACC':>8}"]
    rows = [("constant (train median)", report["baseline_constant"])]
    rows += [(f"{v['mode']}/{v['head']}", v["metrics"]) for v in report["variants"]]
    for name, m in rows:
        lines.append(f"{name:<24}{m['acc']:>8.2f}{m['mae']:>8.3f}{m['mse']:>8.3f}{m['cacc']:>8.2f}")
    return "\n".join(lines)


class TrainQualityStep:
    """``samplemix train-quality``: labels -> checkpoint folder with metrics.json."""

    name = "train-quality"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        train = self.cfg.quality.train
        if not train.labels:
            raise ConfigError("config key 'quality.train.labels' is empty: name labelled files or "
                              f"'{ANNOTATIONS_TABLE}'")
        resolve_local_path(train.encoder, "quality.train.encoder")

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        train = self.cfg.quality.train
        report = QualityTrainer(train).run(load_labels(spark, store, train))
        log.info("train-quality: held-out metrics (%d held out)\n%s", report["n_test"], format_metrics(report))
        return {"labels": report["n_train"] + report["n_test"]}
