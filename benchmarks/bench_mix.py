"""Mix stage: weights -> counts -> exploded output, Spark vs a single-process numpy + pyarrow reference.

    .venv/bin/python benchmarks/bench_mix.py --docs 1000000
    .venv/bin/python benchmarks/bench_mix.py --docs 10000000
    .venv/bin/python benchmarks/bench_mix.py --docs 1000000 --engine jvm-local
    .venv/bin/python benchmarks/bench_mix.py --docs 10000000 --shuffle
    .venv/bin/python benchmarks/bench_mix.py --docs 1000000 --text

Input: one Parquet file of synthetic scored documents (doc_id, domain, q, d,
n_tokens). Both sides read it, compute eq. 2-4 with the same global quantities,
draw integer counts, explode them to (doc_id, replica) rows and write them:
Spark as a Delta table (Parquet on JVM local), the reference to one Parquet file.
The Spark side runs the library's own functions (``compute_stats``,
``weights_frame``, ``explode_copies``, ``lay_out``). The reference draws its
uniforms with a vectorised SplitMix64 of the row index, which is cheaper than
hashing the string doc_id, so it is the faster side by construction; its counts
differ row by row but have the same expectation. ``numpy_math_s`` is the
reference without reading and writing: the floor.

With ``--shuffle`` both sides also order the rows by Spark's ``xxhash64(doc_id,
replica, seed)``: the reference hashes each selected doc_id once with the
``xxhash`` package (a Python loop: the package hashes one input per call), then
chains the replica and the seed in numpy (XXH64 of a 4-byte input, vectorised;
checked against the package), argsorts the signed keys and writes the rows in
that order.

With ``--text`` each document also carries 2-4 KB of generated text (distinct
slices of a 64 MB stream of random words, so neither dictionary encoding nor
repetition flatters the write): Spark runs the library's ``build_output`` (join
the selected weights to the documents' text, explode, write) and the reference
takes the rows by index with pyarrow and writes them to Parquet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplemix_spark.config import build_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.mixing.output import (OUTPUT_COLUMNS, build_output, explode_copies, lay_out,  # noqa: E402
                                           output_file_count)
from samplemix_spark.mixing.weights import compute_stats, weights_frame  # noqa: E402
from samplemix_spark.tables import TableStore  # noqa: E402

DOMAINS = np.array(["web", "news", "wiki", "code", "books", "forum"])


DOCUMENT_COLUMNS = list(OUTPUT_COLUMNS[:-1])  # the output's columns before ``replica``
_CHUNK_ROWS = 65_536


def write_input(path: Path, n: int, seed: int = 0, text: bool = False) -> None:
    rng = np.random.default_rng(seed)
    table = pa.table({
        "doc_id": pa.array(np.char.add("d", np.arange(n).astype("U10"))),
        "domain": pa.array(DOMAINS[rng.integers(0, len(DOMAINS), n)]),
        "q": rng.integers(0, 11, n).astype(np.float64),
        "d": rng.uniform(0, 1, n),
        "n_tokens": rng.integers(20, 4000, n).astype(np.int64),
    })
    if not text:
        pq.write_table(table, path, row_group_size=1_000_000)
        return
    stream = word_stream(rng)
    with pq.ParquetWriter(path, table.schema.append(pa.field("text", pa.string()))) as writer:
        for start in range(0, n, _CHUNK_ROWS):
            part = table.slice(start, _CHUNK_ROWS)
            texts = text_slices(stream, len(part), rng)
            # About 4 bytes per token of English text.
            tokens = pc.divide(pc.binary_length(texts), 4).cast(pa.int64())
            writer.write_table(part.set_column(4, "n_tokens", tokens).append_column("text", texts))


def word_stream(rng: np.random.Generator, size: int = 64 * 2**20) -> np.ndarray:
    """ASCII bytes of random words from a 20,000-word vocabulary."""
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    vocabulary = ["".join(map(chr, rng.choice(letters, rng.integers(2, 11)))) for _ in range(20_000)]
    words = np.array(vocabulary)[rng.integers(0, len(vocabulary), size // 5)]
    return np.frombuffer(" ".join(words).encode("ascii")[:size], dtype=np.uint8)


def text_slices(stream: np.ndarray, n: int, rng: np.random.Generator) -> pa.StringArray:
    """``n`` texts of 2-4 KB, each a slice of ``stream`` at a random offset."""
    lengths = rng.integers(2048, 4097, n)
    starts = rng.integers(0, len(stream) - 4096, n)
    data = np.concatenate([stream[a:a + b] for a, b in zip(starts, lengths)])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def splitmix_uniform(index: np.ndarray, seed: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (index.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) * np.uint64(1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def reference_counts(q: np.ndarray, d: np.ndarray, n_tokens: np.ndarray, alpha: float, tau: float,
                     seed: int) -> np.ndarray:
    def minmax(x):
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else np.zeros_like(x)

    p = alpha * minmax(d) + (1 - alpha) * minmax(q)
    w = np.exp((p - p.max()) / tau)
    c = len(p) * w / w.sum()  # T_tgt = T_src
    whole = np.floor(c)
    return (whole + (splitmix_uniform(np.arange(len(c)), seed) < c - whole)).astype(np.int64)


_P1, _P2, _P3, _P5 = (np.uint64(p) for p in (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F,
                                              0x165667B19E3779F9, 0x27D4EB2F165667C5))


def xxh64_int32(values: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """XXH64 of each 4-byte little-endian int32 under its own 64-bit seed, as Spark's hashInt."""
    with np.errstate(over="ignore"):
        h = seeds + _P5 + np.uint64(4)
        h ^= values.astype(np.uint32).astype(np.uint64) * _P1
        h = ((h << np.uint64(23)) | (h >> np.uint64(41))) * _P2 + _P3
        h ^= h >> np.uint64(33)
        h *= _P2
        h ^= h >> np.uint64(29)
        h *= _P3
        return h ^ (h >> np.uint64(32))


def spark_xxhash64(doc_ids: list[str], replica: np.ndarray, doc_of_row: np.ndarray, seed: int) -> np.ndarray:
    """Spark's ``xxhash64(doc_id, replica, seed)`` per row: the string part once per document."""
    import xxhash

    per_doc = np.fromiter((xxhash.xxh64_intdigest(d.encode("utf-8"), seed=42) for d in doc_ids),
                          dtype=np.uint64, count=len(doc_ids))
    h = xxh64_int32(replica, per_doc[doc_of_row])
    return xxh64_int32(np.full(len(h), seed, dtype=np.int32), h).view(np.int64)


def check_xxhash(seed: int) -> None:
    """The vectorised chain equals the package's per-row chain (and so Spark's xxhash64)."""
    import struct

    import xxhash

    doc_ids, replica = ["d0", "d17", "\u00e9t\u00e9"], np.array([0, 3, 2**31 - 1], dtype=np.int32)
    got = spark_xxhash64(doc_ids, replica, np.arange(3), seed)
    for i, doc_id in enumerate(doc_ids):
        h = xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=42)
        h = xxhash.xxh64_intdigest(struct.pack("<i", int(replica[i])), seed=h)
        h = xxhash.xxh64_intdigest(struct.pack("<i", seed), seed=h)
        assert got[i] == np.array(h, dtype=np.uint64).view(np.int64), (doc_id, got[i], h)


def reference(input_path: Path, output_path: Path, alpha: float, tau: float, seed: int,
              shuffle: bool = False, text: bool = False) -> tuple[float, float, int]:
    """(total seconds, math-only seconds, output rows) of the numpy + pyarrow implementation."""
    started = time.perf_counter()
    table = pq.read_table(input_path, columns=["doc_id", "q", "d", "n_tokens"] + ["domain", "text"] * text)
    q, d, n_tokens = (table[c].to_numpy() for c in ("q", "d", "n_tokens"))
    math_started = time.perf_counter()
    counts = reference_counts(q, d, n_tokens, alpha, tau, seed)
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    replica = np.arange(len(rows)) - np.repeat(starts, counts)
    replica = replica.astype(np.int32)
    if shuffle:
        selected = np.flatnonzero(counts)
        doc_of_row = np.repeat(np.arange(len(selected)), counts[selected])
        keys = spark_xxhash64(table["doc_id"].take(pa.array(selected)).to_pylist(), replica, doc_of_row, seed)
        order = np.argsort(keys, kind="stable")
        rows, replica = rows[order], replica[order]
    math_seconds = time.perf_counter() - math_started
    if text:
        write_copies(table.select(DOCUMENT_COLUMNS), rows, replica, output_path)
    else:
        pq.write_table(pa.table({"doc_id": table["doc_id"].take(pa.array(rows)), "replica": replica}), output_path)
    return time.perf_counter() - started, math_seconds, len(rows)


def write_copies(documents: pa.Table, rows: np.ndarray, replica: np.ndarray, output_path: Path) -> None:
    """Take each copy's row by index, a chunk at a time (a 64-bit-offset text column holds them all)."""
    schema = documents.schema.append(pa.field("replica", pa.int32()))
    documents = documents.set_column(2, "text", documents["text"].cast(pa.large_string())).combine_chunks()
    with pq.ParquetWriter(output_path, schema) as writer:
        for start in range(0, len(rows), _CHUNK_ROWS):
            part = documents.take(pa.array(rows[start:start + _CHUNK_ROWS]))
            part = part.append_column("replica", pa.array(replica[start:start + _CHUNK_ROWS]))
            writer.write_table(part.cast(schema))


def spark_mix(engine: str, input_path: Path, work: Path, alpha: float, tau: float, seed: int,
              shuffle: bool, text: bool = False) -> tuple[float, int, int]:
    """(seconds, output rows, output files) of the library's mix path on ``engine``."""
    cfg = build_config({"engine": {"kind": engine, "master": "local[*]",
                                   "spark_conf": {"spark.driver.memory": "8g"} if engine == "jvm-local" else {}},
                        "tables": {"format": "delta" if engine == "embedded" else "parquet",
                                   "warehouse": str(work / f"wh_{engine}")},
                        "ingest": {"diversity_column": "unused"},
                        "mixing": {"alpha": alpha, "tau": tau, "seed": seed, "shuffle": shuffle}})
    spark = build_session(cfg.engine)
    store = TableStore(spark, cfg.tables)
    started = time.perf_counter()
    scored = spark.read.parquet(str(input_path))
    stats = compute_stats(scored, cfg.mixing)
    if text:
        n_files = output_file_count(stats.expected_rows(), stats.expected_tokens(), cfg.mixing.output_file_mb)
        store.write(build_output(weights_frame(scored, stats), scored, cfg.mixing, n_files), "output")
    else:
        selected = weights_frame(scored, stats).filter("count > 0").select("doc_id", "count")
        # The output here is (doc_id, replica) without text: size files by rows alone.
        n_files = output_file_count(stats.expected_rows(), 0.0, cfg.mixing.output_file_mb)
        store.write(lay_out(explode_copies(selected, ["doc_id"]), cfg.mixing, n_files), "output")
    seconds = time.perf_counter() - started
    rows = store.read("output").count()
    spark.stop()
    return seconds, rows, n_files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--engine", default="embedded", choices=["embedded", "jvm-local"])
    parser.add_argument("--shuffle", action="store_true", help="also order the output by the shuffle hash")
    parser.add_argument("--text", action="store_true", help="documents carry 2-4 KB of text into the output")
    args = parser.parse_args()
    os.environ.setdefault("RUST_LOG", "error")
    work = Path(tempfile.mkdtemp(prefix="bench_mix_"))
    input_path = work / "scored.parquet"
    write_input(input_path, args.docs, text=args.text)
    alpha, tau, seed = 0.8, 0.2, 1024
    if args.shuffle:
        check_xxhash(seed)
    ref_seconds, math_seconds, ref_rows = reference(input_path, work / "reference.parquet", alpha, tau, seed,
                                                    args.shuffle, args.text)
    spark_seconds, rows, n_files = spark_mix(args.engine, input_path, work, alpha, tau, seed, args.shuffle,
                                             args.text)
    print(json.dumps({"bench": "mix", "engine": args.engine, "docs": args.docs, "shuffle": args.shuffle,
                      "text": args.text, "input_mb": round(input_path.stat().st_size / 2**20),
                      "output_rows": rows,
                      "reference_rows": ref_rows, "output_files": n_files, "spark_s": round(spark_seconds, 2),
                      "reference_s": round(ref_seconds, 2), "numpy_math_s": round(math_seconds, 2),
                      "ratio": round(spark_seconds / ref_seconds, 2), "cpus": os.cpu_count(),
                      "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
