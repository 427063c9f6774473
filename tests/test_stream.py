"""The proxy's training stream: chosen in Spark into the small ``proxy_copies`` table, read by the proxy.

The oracle builds every copy of the mix, sorts all of them by the stream key
(xxhash64 recomputed with the xxhash package, ``oracle.spark_stream_key``) and
takes the prefix, which is what the stream means. The staged table must give
that prefix while holding about the budget's bytes, not the mix's.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from samplemix_spark.config import TablesConfig
from samplemix_spark.evaluation.stream import (STREAM_TABLE, Copies, StreamRequest, key_cap, read_stream, stage,
                                               training_stream)
from samplemix_spark.models.byte_lm import SEPARATOR
from samplemix_spark.tables import TableStore

from .oracle import spark_stream_key

N_DOCS = 120


def _texts() -> dict[str, str]:
    rng = np.random.default_rng(5)
    return {f"doc{i}": "é" * int(rng.integers(1, 4)) + f" text of document {i} " * int(rng.integers(1, 30))
            for i in range(N_DOCS)}


def _counts(candidate: int) -> dict[str, int]:
    rng = np.random.default_rng(candidate)
    drawn = rng.integers(0, 4, N_DOCS)
    return {f"doc{i}": int(c) for i, c in enumerate(drawn) if c}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    texts = _texts()
    documents = root / "documents.parquet"
    pq.write_table(pa.table({"doc_id": list(texts), "text": list(texts.values())}), documents, row_group_size=16)
    rows = [(c, d, n) for c in range(4) for d, n in sorted(_counts(c).items())]
    counts = root / "counts.parquet"
    pq.write_table(pa.table({"candidate": pa.array([r[0] for r in rows], pa.int64()), "doc_id": [r[1] for r in rows],
                             "count": pa.array([r[2] for r in rows], pa.int64())}), counts, row_group_size=20)
    output = root / "output.parquet"
    copies = [(d, r, texts[d]) for d, n in _counts(1).items() for r in range(n)]
    pq.write_table(pa.table({"doc_id": [c[0] for c in copies], "replica": pa.array([c[1] for c in copies], pa.int32()),
                             "text": [c[2] for c in copies]}), output, row_group_size=25)
    return str(documents), str(counts), str(output)


@pytest.fixture()
def store(spark, tmp_path):
    return TableStore(spark, TablesConfig(warehouse=str(tmp_path / "wh"), format="parquet"))


def _oracle(counts: dict[str, int], budget: int, seed: int) -> tuple[bytes, int]:
    texts, data, epoch = _texts(), b"", 0
    copies = [(d, r) for d, n in counts.items() for r in range(n)]
    total = sum(len(texts[d].encode()) + len(SEPARATOR) for d, _ in copies)
    while len(data) < budget + 1:
        order = sorted(copies, key=lambda c: spark_stream_key(seed, epoch, c[0], c[1]))
        data += b"".join(texts[d].encode() + SEPARATOR for d, _ in order)
        epoch += 1
    return data[:budget + 1], total


@pytest.mark.parametrize("budget,texts_by", [(300, "broadcast ids"), (5_000, "broadcast ids"),
                                             (60_000, "broadcast ids"), (5_000, "shuffle")])
def test_a_candidate_stream_is_the_prefix_of_its_full_hashed_order(files, store, budget, texts_by, monkeypatch):
    """The kept copies' text comes from the documents filtered by their broadcast ids, or, when those ids are
    too many for one driver read, from a shuffle join: the same stream either way."""
    from samplemix_spark.evaluation import stream as stream_module

    if texts_by == "shuffle":
        monkeypatch.setattr(stream_module, "_ID_BYTES", 2**40)
    documents, counts, _ = files
    expected, total = _oracle(_counts(2), budget, seed=11)
    stream = training_stream(store, Copies((documents,), (counts,), 2, total), budget, seed=11)
    assert stream.data.tobytes() == expected
    assert stream.epochs == pytest.approx((budget + 1) / total)


def test_an_output_stream_is_the_same_prefix_and_its_bytes_are_measured_in_spark(files, store):
    documents, counts, output = files
    expected, total = _oracle(_counts(1), 7_000, seed=3)
    from_output = training_stream(store, Copies((output,)), 7_000, seed=3)
    from_counts = training_stream(store, Copies((documents,), (counts,), 1), 7_000, seed=3)
    assert from_output.data.tobytes() == expected == from_counts.data.tobytes()
    assert from_output.epochs == pytest.approx(7_001 / total) == from_counts.epochs


def test_the_staged_table_holds_about_the_budget_not_the_mix(files, store):
    """Several proxies staged together: each one's rows cover its budget with at most about twice its bytes,
    and a proxy reads only its own row groups."""
    documents, counts, _ = files
    texts = _texts()
    budget = 400
    requests = [StreamRequest(job, Copies((documents,), (counts,), job % 4), seed=job, budget_bytes=budget)
                for job in range(8)]
    placed = stage(store, requests)
    table = store.read(STREAM_TABLE).toPandas()
    longest = max(len(t.encode()) for t in texts.values()) + len(SEPARATOR)
    for request in requests:
        mine = table[table["job"] == request.job]
        counts = _counts(request.copies.candidate)
        mix_bytes = sum((len(texts[d].encode()) + len(SEPARATOR)) * n for d, n in counts.items())
        staged_bytes = sum(len(t.encode()) + len(SEPARATOR) for t in mine["text"])
        assert budget + 1 <= staged_bytes <= 4 * (budget + 1) + 2 * longest < mix_bytes
        files_, total = placed[request.job]
        assert total == mix_bytes
        expected, _ = _oracle(counts, budget, seed=request.seed)
        assert read_stream(files_, request.job, budget, total).data.tobytes() == expected


def test_a_short_last_epoch_is_staged_again_with_a_wider_threshold(files, store, monkeypatch):
    """A threshold far too small for the budget is widened until the kept copies cover it; the stream is unchanged."""
    from samplemix_spark.evaluation import stream as stream_module

    documents, counts, _ = files
    expected, total = _oracle(_counts(3), 3_000, seed=5)
    monkeypatch.setattr(stream_module, "_MARGIN", 0.01)
    writes = []
    original = stream_module._write_kept
    monkeypatch.setattr(stream_module, "_write_kept", lambda *a: writes.append(1) or original(*a))
    stream = training_stream(store, Copies((documents,), (counts,), 3, total), 3_000, seed=5)
    assert stream.data.tobytes() == expected and len(writes) > 1


def test_key_caps_order_like_the_keys_they_bound():
    assert key_cap(1.0) == 2**63 - 1 and key_cap(0.0) == -2**63 - 1
    assert key_cap(0.25) < key_cap(0.5) < key_cap(0.75) and key_cap(0.5) == -1


def test_a_mix_without_copies_or_text_is_refused(files, store):
    from samplemix_spark.errors import TableError

    with pytest.raises(TableError, match="no data files"):
        training_stream(store, Copies(()), 300, seed=1)
    documents, counts, _ = files
    with pytest.raises(TableError, match="holds no text"):
        training_stream(store, Copies((documents,), (counts,), candidate=99), 300, seed=1)
