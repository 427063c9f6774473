"""A run's training bytes for a proxy: the output table's current files, in a hashed order.

The driver lists the files of the table's current version
(``tables.files.snapshot_files``). Executor side (or the driver, when proxies
run there): ``training_stream`` reads ``doc_id``, ``replica`` and ``text`` from those files with pyarrow and
orders every copy by a hash of (seed, epoch, doc_id, replica) (``hashing.stream_key``). The order does
not depend on how the output was laid out (``mixing.shuffle``, file count), so
a prefix of the stream is an unbiased sample of the mixture, and two runs that
share documents read them in the same relative order. When the budget exceeds
the output, the stream cycles through it again in a new hashed order (a new
epoch), and says how many epochs it took.

Only the rows whose hash falls under a threshold are kept while reading, so a
large output is never held in memory whole: the threshold starts at about twice
the budget's share of the output bytes and doubles until the budget is covered.
The rows under a threshold are, in hash order, exactly the first rows of the
full order, so the threshold never changes the stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from samplemix_spark.errors import TableError
from samplemix_spark.hashing import stream_key
from samplemix_spark.models.byte_lm import SEPARATOR

log = logging.getLogger(__name__)
_COLUMNS = ["doc_id", "replica", "text"]
_TWO_POW_64 = float(2**64)


@dataclass
class Stream:
    data: np.ndarray  # uint8, budget + 1 bytes
    epochs: float     # how many times the stream went through the output


@dataclass(frozen=True)
class Copies:
    """Where a mix's copies (doc_id, replica, text) are read from.

    Either an ``output`` table's files, or (for a candidate mix that was never
    written out) the ``documents`` table's files with a count per doc_id: both
    give the same copies, hence the same stream, for the same mix.
    """

    files: tuple
    counts: Optional[dict] = None  # doc_id -> count >= 1; None: the files are an output table

    def rows(self) -> Iterator[tuple[str, int, str]]:
        import pyarrow.parquet as pq

        from samplemix_spark.tables.files import filesystem_for

        columns = _COLUMNS if self.counts is None else ["doc_id", "text"]
        for path in self.files:
            filesystem, inner = filesystem_for(path)
            table = pq.read_table(inner, columns=columns, filesystem=filesystem)
            if self.counts is None:
                yield from zip(*(table.column(c).to_pylist() for c in _COLUMNS))
                continue
            for doc_id, text in zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist()):
                for replica in range(self.counts.get(doc_id, 0)):
                    yield doc_id, replica, text

    def estimated_bytes(self) -> int:
        """The text column's uncompressed size from the Parquet footers: a first guess of the copies' bytes."""
        import pyarrow.parquet as pq

        from samplemix_spark.tables.files import filesystem_for

        total = 0
        for path in self.files:
            filesystem, inner = filesystem_for(path)
            with filesystem.open_input_file(inner) as handle:
                meta = pq.ParquetFile(handle).metadata
            index = meta.schema.names.index("text")
            total += sum(meta.row_group(i).column(index).total_uncompressed_size
                         for i in range(meta.num_row_groups))
        if self.counts is None:
            return total
        return int(total * sum(self.counts.values()) / max(1, len(self.counts)))


def _read_under(copies: Copies, seed: int, epoch: int, threshold: float) -> tuple[list, int]:
    """(key, doc_id, replica, bytes) of the copies whose key / 2^64 < threshold, in key order, and their total bytes."""
    kept, total = [], 0
    for doc_id, replica, text in copies.rows():
        data = text.encode("utf-8") + SEPARATOR
        total += len(data)
        key = stream_key(seed, epoch, doc_id, replica)
        if key < threshold * _TWO_POW_64:
            kept.append((key, doc_id, replica, data))
    kept.sort()
    return kept, total


def _epoch_bytes(copies: Copies, seed: int, epoch: int, need: int, guess: int) -> tuple[bytes, int]:
    """Up to ``need`` bytes of one epoch's order, and the copies' total bytes."""
    threshold = min(1.0, 2.0 * need / guess) if guess else 1.0
    while True:
        kept, total = _read_under(copies, seed, epoch, threshold)
        if threshold >= 1.0 or sum(len(k[3]) for k in kept) >= need:
            return b"".join(k[3] for k in kept)[:need], total
        threshold = min(1.0, 2.0 * threshold)


def training_stream(copies: Copies | list[str], budget_bytes: int, seed: int) -> Stream:
    """``budget_bytes + 1`` bytes of the copies in the seed's hashed order (see the module doc).

    ``copies`` may be a list of output files.
    """
    copies = copies if isinstance(copies, Copies) else Copies(tuple(copies))
    if not copies.files:
        raise TableError("the output table has no data files: the mix selected no documents")
    need, parts, epoch, guess = budget_bytes + 1, [], 0, copies.estimated_bytes()
    while need > 0:
        chunk, guess = _epoch_bytes(copies, seed, epoch, need, guess)
        if not chunk:
            raise TableError("the mix holds no text")
        parts.append(chunk)
        need -= len(chunk)
        epoch += 1
    return Stream(np.frombuffer(b"".join(parts), dtype=np.uint8), (budget_bytes + 1) / guess)
