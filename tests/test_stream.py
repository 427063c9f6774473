"""The proxy's training stream read in two passes (keys, then only the texts it needs) against the full order.

Pure pyarrow files, no engine: the oracle builds every copy of the mix, sorts all
of them by ``stream_key`` and takes the prefix, which is what the stream means.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from samplemix_spark.evaluation.stream import Copies, training_stream
from samplemix_spark.hashing import stream_key
from samplemix_spark.models.byte_lm import SEPARATOR

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
    return str(documents), str(counts)


def _oracle(counts: dict[str, int], budget: int, seed: int) -> tuple[bytes, int]:
    texts, data, epoch = _texts(), b"", 0
    copies = [(d, r) for d, n in counts.items() for r in range(n)]
    total = sum(len(texts[d].encode()) + len(SEPARATOR) for d, _ in copies)
    while len(data) < budget + 1:
        order = sorted(copies, key=lambda c: stream_key(seed, epoch, c[0], c[1]))
        data += b"".join(texts[d].encode() + SEPARATOR for d, _ in order)
        epoch += 1
    return data[:budget + 1], total


@pytest.mark.parametrize("budget", [300, 5_000, 60_000])
def test_a_candidate_stream_is_the_prefix_of_its_full_hashed_order(files, budget):
    documents, counts = files
    expected, total = _oracle(_counts(2), budget, seed=11)
    stream = training_stream(Copies((documents,), (counts,), 2, total), budget, seed=11)
    assert stream.data.tobytes() == expected
    assert stream.epochs == pytest.approx((budget + 1) / total)


def test_an_output_stream_measures_its_own_bytes_when_the_driver_did_not(files, tmp_path):
    texts, counts = _texts(), _counts(1)
    rows = [(d, r, texts[d]) for d, n in counts.items() for r in range(n)]
    output = tmp_path / "output.parquet"
    pq.write_table(pa.table({"doc_id": [r[0] for r in rows], "replica": pa.array([r[1] for r in rows], pa.int64()),
                             "text": [r[2] for r in rows]}), output, row_group_size=25)
    expected, total = _oracle(counts, 7_000, seed=3)
    stream = training_stream([str(output)], 7_000, seed=3)
    assert stream.data.tobytes() == expected and stream.epochs == pytest.approx(7_001 / total)


def test_a_proxy_reads_only_its_candidates_row_groups_and_the_text_it_needs(files, monkeypatch):
    documents, counts = files
    reads: list[tuple[str, tuple]] = []
    original = pq.ParquetFile.read_row_group

    def counting(self, group, columns=None, **kwargs):
        reads.append((self.metadata.num_rows, group, tuple(columns or ())))
        return original(self, group, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    _, total = _oracle(_counts(0), 300, seed=1)
    training_stream(Copies((documents,), (counts,), 0, total), 300, seed=1)
    n_counts = pq.ParquetFile(counts).metadata.num_rows
    counts_groups = {g for rows, g, _ in reads if rows == n_counts}
    candidate_zero = -(-len(_counts(0)) // 20) + 1  # its row groups, plus one it may share with candidate 1
    assert 0 < len(counts_groups) <= candidate_zero < pq.ParquetFile(counts).num_row_groups
    text_groups = {g for rows, g, cols in reads if rows == N_DOCS and "text" in cols}
    assert 0 < len(text_groups) < pq.ParquetFile(documents).num_row_groups


def test_a_candidate_without_measured_bytes_is_refused():
    with pytest.raises(ValueError, match="total_bytes"):
        Copies(("documents.parquet",), ("counts.parquet",), 0)
