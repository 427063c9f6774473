"""The held-out evaluation set, as the proxies see it.

Ingest splits the held-out documents off into the ``holdout`` table (see
``ingest.documents.split_holdout``). Ingest also owns its fingerprint
(``ingest.holdout.fingerprint``), which every mix run records so that runs
judged on different held-out sets are refused. Here, on the driver, the table
becomes a ``HeldOutSpec``: its current files and how to cut documents from them.
Wherever a proxy trains (the driver or an executor), ``load`` reads those files
with pyarrow, so held-out text never travels in a task closure.

What a proxy is scored on, per domain: the held-out documents in a hashed order
(``hashing.HOLDOUT_ORDER``), the first ``max_docs`` at the final step and the
first ``step_docs`` of those at every evaluation step (the same documents for
every run, so curves compare). Each document is its own sequence of at most
``doc_bytes`` bytes; a longer one contributes a window that starts at an offset
hashed from its doc_id (``hashing.HOLDOUT_WINDOW``), so a long header or preamble
does not stand for the whole document.

Two halves, so that choosing and reporting never rest on the same documents: in
each domain's hashed order the scored documents alternate between ``select``
(what ``tune``, the QuaDMix search and the BiMix swarm choose on) and ``report``
(what their summaries and ``evaluate`` report). Alternating rather than hashing
each document into a half gives every domain of two or more documents both
halves, within one document of equal size; and because the per-step documents
are a prefix of the same order, they split the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from samplemix_spark.errors import InputError
from samplemix_spark.hashing import HOLDOUT_ORDER, HOLDOUT_WINDOW, doc_key
from samplemix_spark.ingest.holdout import checked_documents, first_in_order
from samplemix_spark.ingest.holdout import fingerprint, required_fingerprint  # noqa: F401  (re-exported)
from samplemix_spark.models.proxy_presets import SEPARATOR  # noqa: F401  (read as holdout.SEPARATOR)
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.files import parquet_files, snapshot_files


@dataclass(frozen=True)
class HeldOutSpec:
    """Where the held-out documents are and how many are scored: plain data, so it travels to executors."""

    files: tuple
    doc_bytes: int = 4096
    max_docs: int = 2000
    step_docs: int = 256


@dataclass(frozen=True)
class DomainDocs:
    """One domain's scored documents in hashed order; the first ``n_step`` are scored at every step."""

    doc_ids: tuple
    texts: tuple  # bytes, each at most doc_bytes long
    n_step: int

    def n_bytes(self, docs: int | None = None) -> int:
        return sum(len(t) for t in self.texts[:docs])


def spec(store: TableStore, doc_bytes: int, max_docs: int, step_docs: int,
         out: Optional[TableStore] = None) -> HeldOutSpec:
    """The documents proxies are scored on, written once to ``out``'s ``holdout_scored`` table (default:
    ``store``'s), that table's files and the scoring settings (driver side).

    Every proxy then reads at most domains x ``max_docs`` documents instead of the
    whole held-out table, and ``load`` picks the same documents from either. Only
    documents the near-copy check covered (``holdout_overlap``) are scored.
    """
    out = out or store
    out.write(scored_candidates(store.read("holdout"), max_docs, checked_documents(store)), SCORED_TABLE)
    return HeldOutSpec(tuple(snapshot_files(out, SCORED_TABLE)), doc_bytes, max_docs, step_docs)


SCORED_TABLE = "holdout_scored"


def scored_candidates(holdout: DataFrame, max_docs: int, checked: Optional[DataFrame] = None) -> DataFrame:
    """doc_id, domain, text of each domain's first ``max_docs`` documents with text in ``HOLDOUT_ORDER``, among
    the ``checked`` ones (doc_id) when given (executor-side work; the driver collects one count per domain).

    ``checked`` is ``ingest.holdout.checked_documents``: the held-out documents
    ingest's near-copy check covered, so a document it never compared with
    training text is never scored. The choice itself is ``ingest.holdout.first_in_order``.
    """
    with_text = holdout.where(F.col("text").isNotNull() & (F.col("text") != ""))
    if checked is not None:
        with_text = with_text.join(checked.select("doc_id"), "doc_id", "left_semi")
    chosen = first_in_order(with_text, max_docs)
    return holdout.join(F.broadcast(chosen), "doc_id").select("doc_id", "domain", "text")


def window(doc_id: str, data: bytes, doc_bytes: int) -> bytes:
    """The whole document, or ``doc_bytes`` of it from an offset hashed from its doc_id."""
    if len(data) <= doc_bytes:
        return data
    start = doc_key(HOLDOUT_WINDOW, doc_id) % (len(data) - doc_bytes + 1)
    return data[start:start + doc_bytes]


@functools.lru_cache(maxsize=4)
def load(held_out: HeldOutSpec) -> dict[str, DomainDocs]:
    """Per domain, the documents a proxy is scored on (see the module doc). Runs where the proxy trains.

    The files are read a row group at a time and each domain keeps only its first
    ``max_docs`` in hashed order (cut back whenever it holds twice that), so memory
    follows ``max_docs`` and the domains, not the held-out split.
    """
    by_domain: dict[str, list] = {}
    for handle in parquet_files(held_out.files):
        for group in range(handle.num_row_groups):
            rows = handle.read_row_group(group, columns=["doc_id", "domain", "text"])
            for doc_id, domain, text in zip(*(rows.column(c).to_pylist() for c in ("doc_id", "domain", "text"))):
                if text:
                    kept = by_domain.setdefault(domain, [])
                    kept.append((doc_key(HOLDOUT_ORDER, doc_id), doc_id,
                                 window(doc_id, text.encode("utf-8"), held_out.doc_bytes)))
                    if len(kept) >= 2 * held_out.max_docs:
                        kept[:] = sorted(kept)[:held_out.max_docs]
    chosen = {}
    for domain, rows in sorted(by_domain.items()):
        rows = sorted(rows)[:held_out.max_docs]
        chosen[domain] = DomainDocs(tuple(r[1] for r in rows), tuple(r[2] for r in rows),
                                    min(held_out.step_docs, len(rows)))
    return chosen


HALVES = ("select", "report")


def halves(frame: pd.DataFrame) -> np.ndarray:
    """``select`` or ``report`` for every row of a frame with ``domain`` and ``doc_id`` (see the module doc)."""
    docs = frame[["domain", "doc_id"]].drop_duplicates()
    keys = docs.assign(key=[doc_key(HOLDOUT_ORDER, d) for d in docs["doc_id"]])
    position = keys.sort_values(["domain", "key", "doc_id"]).groupby("domain").cumcount()
    half = pd.Series(np.where(position % 2 == 0, HALVES[0], HALVES[1]), index=position.index)
    by_doc = pd.Series(half.reindex(docs.index).to_numpy(), index=pd.MultiIndex.from_frame(docs))
    return by_doc.reindex(pd.MultiIndex.from_frame(frame[["domain", "doc_id"]])).to_numpy()


def in_half(frame: pd.DataFrame, half: Optional[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose documents lie in ``half`` (``select`` or ``report``); all of them for None."""
    if half is None:
        return frame
    if half not in HALVES:
        raise ValueError(f"unknown held-out half {half!r}; expected one of {', '.join(HALVES)}")
    kept = frame[halves(frame) == half]
    lacking = sorted(set(frame["domain"]) - set(kept["domain"]))
    if lacking:
        raise InputError(f"held-out domains {', '.join(lacking)} have one scored document, so the {half} half has "
                         "none of them: choosing and reporting on separate halves needs at least 2 per domain; raise "
                         "ingest.holdout_fraction or ingest.holdout_docs (or evaluate.max_eval_docs) and rerun ingest")
    return kept
