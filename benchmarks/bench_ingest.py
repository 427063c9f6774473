"""Ingest throughput on the quick-start corpus: rows/s of `samplemix ingest`, median of repeated runs.

    .venv/bin/samplemix demo-data            # data/demo: about 11,000 real documents, 45 MB of JSONL
    .venv/bin/python benchmarks/bench_ingest.py --repeats 3
    .venv/bin/python benchmarks/bench_ingest.py --repeats 3 --repo /path/to/other/checkout   # another version

Each run is its own `samplemix ingest --config conf/local.yaml` process on the
embedded engine (or ``--engine jvm-local`` with Parquet tables), reading the
sources of ``--sources``; the rate is the one the stage line prints (input rows
over the stage's time, which includes token counting and both table writes).
``--repo`` runs the same command with another checkout's code, which is how a
version is compared with the one before it.

At scale, against the engine's own reader:

    .venv/bin/python benchmarks/bench_ingest.py --docs 400000 --formats parquet json

generates ``--docs`` documents of about 2 KB (Parquet: 4 files of 4 row groups;
JSONL: 4 files) under ``out/bench_ingest``, then for each format runs, one after
the other, `samplemix ingest` and the engine's own reader (``spark.read``) with
the same token-count UDF and the same Delta write of doc_id, domain, text and
n_tokens, and times counting the tokens of every text alone in this process. It
prints the ratio of the two stage times and the share of ingest's time the token
counting alone would take.

Would decoding the sources once pay?

    .venv/bin/python benchmarks/bench_ingest.py --docs 400000 --formats parquet json --passes

Ingest reads its sources once per table it writes and once for its checks: each
such pass decodes the files, hashes every text and ranks duplicates (a window
over doc_id). ``--passes`` times the parts a decode-once ingest would trade:
one such pass over the sources (F, the checks' aggregate), writing the parsed
rows once to a staging Delta table (S), the same aggregate over that table (R)
and a read of its texts (T, what the documents write would read). Ingest
without a held-out split makes four passes; decoding once would make one pass
into S, one read of the texts and three narrow reads, so it saves
4F - S - T - 3R.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"stage ingest: .* in ([0-9.]+) s \(([0-9,]+) rows/s\)")
JVM = ["engine.kind=jvm-local", "engine.master=local[2]", "tables.format=parquet"]


def run_once(repo: Path, sources: str, engine: str, work: Path, extra: tuple = ()) -> float:
    sets = [f"ingest.sources=[{sources}]", f"tables.warehouse={work}/wh", *(JVM if engine == "jvm-local" else []),
            *extra]
    env = {**os.environ, "PYTHONPATH": str(repo), "PYSPARK_PYTHON": sys.executable}
    result = subprocess.run([sys.executable, "-m", "samplemix_spark.cli", "ingest", "--config",
                             str(repo / "conf" / "local.yaml"), *[f"--set={s}" for s in sets]],
                            cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    match = STAGE_LINE.search(result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(result.stderr[-3000:])
    return float(match.group(2).replace(",", ""))


WORDS = ("river delta silt flood farmer terrace canal valley glacier water summer crop market report council "
         "budget school teacher student science energy solar wind grid price court ruling appeal law").split()


def generate_corpus(out: Path, n_docs: int, fmt: str) -> str:
    """``n_docs`` documents of about 2 KB in 4 files (Parquet: 4 row groups each); returns the source glob."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = out / fmt
    if folder.exists():
        return str(folder / "*")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_file = -(-n_docs // 4)
    for k in range(4):
        n = min(per_file, n_docs - k * per_file)
        words = np.array(WORDS)[rng.integers(0, len(WORDS), (n, 330))]
        table = pa.table({"text": [" ".join(row) for row in words],
                          "domain": [f"d{int(v)}" for v in rng.integers(0, 5, n)]})
        if fmt == "parquet":
            pq.write_table(table, folder / f"part-{k}.parquet", row_group_size=-(-n // 4))
        else:
            with open(folder / f"part-{k}.jsonl", "w") as handle:
                for text, domain in zip(table["text"].to_pylist(), table["domain"].to_pylist()):
                    handle.write(json.dumps({"text": text, "domain": domain}) + "\n")
    return str(folder / "*")


NATIVE = """
import sys, time
from pyspark.sql import functions as F
from samplemix_spark.config import load_config
from samplemix_spark.engine.session import build_session
from samplemix_spark.ingest.tokens import token_count_column
cfg = load_config(sys.argv[1])
spark = build_session(cfg.engine)
started = time.perf_counter()
frame = spark.read.format(sys.argv[2]).load(sys.argv[3])
frame.select(F.sha2("text", 256).substr(1, 32).alias("doc_id"), "domain", "text",
             token_count_column(F.col("text"), cfg.ingest.tokenizer).alias("n_tokens")) \
    .write.mode("overwrite").format("delta").save(sys.argv[4])
print(time.perf_counter() - started)
"""


def scale(args) -> None:
    """`samplemix ingest` against the engine's own reader on a generated corpus (see the module doc)."""
    from samplemix_spark.config import load_config
    from samplemix_spark.ingest.tokens import count_tokens

    out = REPO / "out" / "bench_ingest" / str(args.docs)
    tokenizer = load_config(str(REPO / "conf" / "local.yaml")).ingest.tokenizer
    env = {**os.environ, "PYTHONPATH": str(REPO), "SAMPLEMIX_PROGRESS_S": "0"}
    for fmt in args.formats:
        sources = generate_corpus(out, args.docs, fmt)
        with tempfile.TemporaryDirectory() as work:
            rate = run_once(REPO, sources, "embedded", Path(work), [f"ingest.format={fmt}",
                                                                     "ingest.holdout_fraction=0"])
            ours = args.docs / rate
            native = float(subprocess.run(
                [sys.executable, "-c", NATIVE, str(REPO / "conf" / "local.yaml"), "parquet" if fmt == "parquet"
                 else "json", sources.replace("*", ""), f"{work}/native"], env=env, capture_output=True, text=True,
                check=True, timeout=3600).stdout.split()[-1])
        texts = generate_texts(sources, fmt)
        started = time.perf_counter()
        count_tokens(texts, tokenizer)
        tokens_s = time.perf_counter() - started
        print(json.dumps({"bench": "ingest_scale", "format": fmt, "docs": args.docs,
                          "mb": round(sum(len(t) for t in texts) / 1e6), "samplemix_s": round(ours, 1),
                          "native_s": round(native, 1), "ratio": round(ours / native, 2),
                          "token_count_s": round(tokens_s, 1), "token_share": round(tokens_s / ours, 2),
                          "tokenizer": tokenizer, "date": time.strftime("%Y-%m-%d")}), flush=True)


PASSES = """
import json, sys, time
from pyspark.sql import functions as F
from samplemix_spark.config import load_config
from samplemix_spark.engine.session import build_session
from samplemix_spark.ingest.documents import flag_rows, read_raw, summarise
cfg = load_config(sys.argv[1], [f"ingest.sources=[{sys.argv[2]}]", f"ingest.format={sys.argv[3]}"])
spark = build_session(cfg.engine)
def timed(work):
    started = time.perf_counter()
    work()
    return time.perf_counter() - started
flagged = lambda: flag_rows(read_raw(spark, cfg.ingest), cfg)
one_pass = min(timed(lambda: summarise(flagged())), timed(lambda: summarise(flagged())))  # the first warms up
stage = timed(lambda: flagged().write.mode("overwrite").format("delta").save(sys.argv[4]))
staged = timed(lambda: summarise(spark.read.format("delta").load(sys.argv[4])))
texts = timed(lambda: spark.read.format("delta").load(sys.argv[4]).agg(F.sum(F.length("text"))).collect())
print(json.dumps({"pass_s": one_pass, "stage_s": stage, "staged_pass_s": staged, "staged_text_s": texts}))
"""


def passes(args) -> None:
    """The parts of a decode-once ingest, timed (see the module doc)."""
    out = REPO / "out" / "bench_ingest" / str(args.docs)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SAMPLEMIX_PROGRESS_S": "0"}
    for fmt in args.formats:
        sources = generate_corpus(out, args.docs, fmt)
        with tempfile.TemporaryDirectory() as work:
            times = json.loads(subprocess.run(
                [sys.executable, "-c", PASSES, str(REPO / "conf" / "local.yaml"), sources, fmt, f"{work}/staged"],
                env=env, capture_output=True, text=True, check=True, timeout=3600).stdout.splitlines()[-1])
        saving = 4 * times["pass_s"] - times["stage_s"] - times["staged_text_s"] - 3 * times["staged_pass_s"]
        print(json.dumps({"bench": "ingest_passes", "format": fmt, "docs": args.docs,
                          **{k: round(v, 1) for k, v in times.items()}, "decode_once_saves_s": round(saving, 1),
                          "date": time.strftime("%Y-%m-%d")}), flush=True)


def generate_texts(sources: str, fmt: str) -> list[str]:
    import glob

    import pyarrow.parquet as pq

    files = sorted(glob.glob(sources))
    if fmt == "parquet":
        return [t for f in files for t in pq.read_table(f, columns=["text"])["text"].to_pylist()]
    return [json.loads(line)["text"] for f in files for line in open(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=str(REPO / "data" / "demo" / "*.jsonl"))
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose code runs (default: this one)")
    parser.add_argument("--engine", default="embedded", choices=["embedded", "jvm-local"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--docs", type=int, help="generate this many documents and compare with the engine's reader")
    parser.add_argument("--formats", nargs="+", default=["parquet", "json"], choices=["parquet", "json"])
    parser.add_argument("--passes", action="store_true",
                        help="with --docs: time what decoding the sources once would trade (see the module doc)")
    args = parser.parse_args()
    if args.docs:
        (passes if args.passes else scale)(args)
        return
    rates = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as work:
            rates.append(run_once(args.repo.resolve(), args.sources, args.engine, Path(work)))
    print(json.dumps({"bench": "ingest", "engine": args.engine, "repo": str(args.repo), "sources": args.sources,
                      "rows_per_s": rates, "median_rows_per_s": statistics.median(rates)}))


if __name__ == "__main__":
    main()
