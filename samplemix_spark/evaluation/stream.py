"""A run's training bytes for a proxy: a mix's copies in a hashed order, read without holding the mix.

The driver names where the copies are (``Copies``): an output table's files, or,
for a candidate mix that was never written out, the documents table's files and
one candidate's rows of a counts table (candidate, doc_id, count). Both give the
same copies, hence the same stream. The driver also measures the copies' bytes
with one Spark aggregate, so no proxy reads every text to learn it.

Executor side (or the driver, when proxies run there): ``training_stream``
orders every copy by a hash of (seed, epoch, doc_id, replica)
(``hashing.stream_key``). The order does not depend on how the output was laid
out (``mixing.shuffle``, file count), so a prefix of the stream is an unbiased
sample of the mixture, and two runs that share documents read them in the same
relative order. When the budget exceeds the mix, the stream cycles through it
again in a new hashed order (a new epoch), and says how many epochs it took.

Reading is in two passes, so memory follows the budget, never the mix:

1. keys: only (doc_id, replica) or a candidate's (doc_id, count) are read, in
   row groups (a counts file's row groups of other candidates are skipped by
   their statistics), and the copies whose key falls under a threshold are kept;
2. texts: only the documents those copies name are read, row group by row group,
   matched on doc_id.

The threshold starts at about twice the budget's share of the mix's bytes and
doubles until the kept copies cover the budget. The copies under a threshold
are, in key order, exactly the first copies of the full order, so the threshold
never changes the stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from samplemix_spark.errors import TableError
from samplemix_spark.hashing import stream_key
from samplemix_spark.models.byte_lm import SEPARATOR
from samplemix_spark.tables.files import parquet_files

log = logging.getLogger(__name__)
_TWO_POW_64 = float(2**64)


@dataclass
class Stream:
    data: np.ndarray  # uint8, budget + 1 bytes
    epochs: float     # how many times the stream went through the mix


@dataclass(frozen=True)
class Copies:
    """Where a mix's copies (doc_id, replica, text) are read from: plain data, so it travels to executors.

    ``files`` are an output table's files (``counts_files`` empty), or the
    documents table's files with ``candidate``'s rows of ``counts_files``.
    ``total_bytes`` is every copy's text plus separator, as the driver measured it
    (``copies_bytes``); 0 when unknown, and then it is measured here by reading
    every text's length once.
    """

    files: tuple
    counts_files: tuple = ()
    candidate: int = -1
    total_bytes: int = 0

    def __post_init__(self) -> None:
        if self.counts_files and not self.total_bytes:
            raise ValueError("a candidate's copies need total_bytes from the driver (copies_bytes)")

    def keys(self, seed: int, epoch: int, threshold: float) -> list[tuple[int, str, int]]:
        """(key, doc_id, replica) of the copies whose key / 2^64 < ``threshold``, in key order."""
        limit, kept = threshold * _TWO_POW_64, []
        for doc_id, replica in self._copies():
            key = stream_key(seed, epoch, doc_id, replica)
            if key < limit:
                kept.append((key, doc_id, replica))
        kept.sort()
        return kept

    def texts(self, doc_ids: set[str]) -> dict[str, bytes]:
        """Text plus separator of each of ``doc_ids``, read only from the row groups that hold them."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted, found = pa.array(sorted(doc_ids), pa.string()), {}
        for handle in parquet_files(self.files):
            for group in range(handle.num_row_groups):
                ids = handle.read_row_group(group, columns=["doc_id"]).column("doc_id")
                mask = pc.is_in(ids, value_set=wanted)
                if not pc.any(mask).as_py():
                    continue
                texts = handle.read_row_group(group, columns=["text"]).column("text").filter(mask)
                for doc_id, text in zip(ids.filter(mask).to_pylist(), texts.to_pylist()):
                    found.setdefault(doc_id, text.encode("utf-8") + SEPARATOR)
        return found

    def measured_bytes(self) -> int:
        """``total_bytes``, else an output's bytes from its text lengths (one pass, a row group at a time)."""
        if self.total_bytes:
            return self.total_bytes
        import pyarrow.compute as pc

        total = 0
        for handle in parquet_files(self.files):
            for group in range(handle.num_row_groups):
                text = handle.read_row_group(group, columns=["text"]).column("text")
                total += pc.sum(pc.binary_length(pc.cast(text, "binary"))).as_py() or 0
                total += len(text) * len(SEPARATOR)
        return total

    def _copies(self) -> Iterator[tuple[str, int]]:
        """Every (doc_id, replica): an output's rows, or each of a candidate's documents ``count`` times."""
        if not self.counts_files:
            for handle in parquet_files(self.files):
                for group in range(handle.num_row_groups):
                    rows = handle.read_row_group(group, columns=["doc_id", "replica"])
                    yield from zip(rows.column("doc_id").to_pylist(), rows.column("replica").to_pylist())
            return
        for rows in _candidate_rows(self.counts_files, self.candidate):
            for doc_id, count in zip(rows.column("doc_id").to_pylist(), rows.column("count").to_pylist()):
                for replica in range(count):
                    yield doc_id, replica


def _candidate_rows(files: tuple, candidate: int):
    """One candidate's (doc_id, count) rows, a row group at a time; row groups without it are skipped unread."""
    import pyarrow.compute as pc

    for handle in parquet_files(files):
        column = handle.metadata.schema.names.index("candidate")
        for group in range(handle.num_row_groups):
            stats = handle.metadata.row_group(group).column(column).statistics
            if stats is not None and stats.has_min_max and not stats.min <= candidate <= stats.max:
                continue
            rows = handle.read_row_group(group, columns=["candidate", "doc_id", "count"])
            yield rows.filter(pc.equal(rows.column("candidate"), candidate))


def _epoch_bytes(copies: Copies, seed: int, epoch: int, need: int, total: int) -> bytes:
    """Up to ``need`` bytes of one epoch's order (see the module doc)."""
    threshold = min(1.0, 2.0 * need / total)
    while True:
        kept = copies.keys(seed, epoch, threshold)
        texts = copies.texts({doc_id for _, doc_id, _ in kept})
        parts, size = [], 0
        for _, doc_id, _ in kept:
            if size >= need:
                break
            parts.append(texts[doc_id])
            size += len(parts[-1])
        if threshold >= 1.0 or size >= need:
            return b"".join(parts)[:need]
        threshold = min(1.0, 2.0 * threshold)


def training_stream(copies: Copies | list[str], budget_bytes: int, seed: int) -> Stream:
    """``budget_bytes + 1`` bytes of the copies in the seed's hashed order (see the module doc).

    ``copies`` may be a list of output files.
    """
    copies = copies if isinstance(copies, Copies) else Copies(tuple(copies))
    if not copies.files:
        raise TableError("the output table has no data files: the mix selected no documents")
    total = copies.measured_bytes()
    if not total:
        raise TableError("the mix holds no text")
    need, parts, epoch = budget_bytes + 1, [], 0
    while need > 0:
        chunk = _epoch_bytes(copies, seed, epoch, need, total)
        parts.append(chunk)
        need -= len(chunk)
        epoch += 1
    return Stream(np.frombuffer(b"".join(parts), dtype=np.uint8), (budget_bytes + 1) / total)
