"""The whole pipeline at two corpus sizes on classic Spark with a small driver: time and memory per stage.

    .venv/bin/python benchmarks/scale_sim.py --sizes 250000 2000000
    .venv/bin/python benchmarks/scale_sim.py --sizes 20000 --no-evaluate --result-cap 8m   # what CI runs

A generated corpus of short documents (hashed ids, 12 domains of skewed sizes,
one above 60% of the documents, pseudo-words drawn per domain so clusters form)
goes through every stage of ``samplemix run`` (ingest with a held-out set,
heuristic quality, embed with the static encoder, cluster, assign, diversity,
mix, report), then ``evaluate --preset test`` with one seed, on JVM local Spark
with ``spark.driver.memory`` and ``spark.driver.maxResultSize`` capped.

Per stage it prints the seconds, the peak memory of the driver's whole process
tree (this process, the JVM and its Python workers; in local mode the executors
run in that JVM), summed as proportional set sizes so the pages forked Python
workers share count once, and the peak JVM heap in use, then for two sizes the
ratios and the targets (each size runs in a process of its own, so in a JVM and a
Python driver of its own, as a job would): every stage finished; a stage over 60 s at the larger
size grows at most 9x in time for 8x the documents; the tree's peak grows at
most 1.3x and stays under 3 GB. ``--json`` keeps the figures.

``--small-driver`` adds ``SMALL_DRIVER_CONF`` and ``SMALL_DRIVER_ENV`` (the JVM's
collector, code cache and Netty pools, Python workers that exit after their task,
fewer glibc arenas): a lower peak for a slower ingest (docs/scaling.md has both runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from samplemix_spark.config import load_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.pipeline import plan, run_step  # noqa: E402

DOMAINS = 12
LARGEST_SHARE = 0.62
WORDS_PER_DOMAIN = 400
MEDIAN_WORDS = 40
FILE_DOCS = 100_000
TIME_GROWTH, MEMORY_GROWTH, MEMORY_CAP_GB, SLOW_STAGE_S = 9.0, 1.3, 3.0, 60.0


def domain_shares() -> np.ndarray:
    """One domain of ``LARGEST_SHARE``, each of the others 0.7 times the one before (0.3% of the documents for
    the smallest)."""
    rest = 0.7 ** np.arange(DOMAINS - 1)
    return np.concatenate([[LARGEST_SHARE], (1 - LARGEST_SHARE) * rest / rest.sum()])


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    letters = np.array(list("abcdefghiklmnoprstuvwy"))
    lengths = rng.integers(2, 9, DOMAINS * WORDS_PER_DOMAIN)
    return np.array(["".join(rng.choice(letters, n)) for n in lengths])


def write_corpus(folder: Path, n_docs: int, seed: int = 11) -> list[Path]:
    """Parquet files of ``n_docs`` documents (id, domain, text); each domain draws Zipf-ranked words from its
    own slice of the vocabulary, with a shared tail, so documents of a domain lie near each other."""
    rng = np.random.default_rng(seed)
    vocabulary = _vocabulary(rng)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for first in range(0, n_docs, FILE_DOCS):
        count = min(FILE_DOCS, n_docs - first)
        domain = rng.choice(DOMAINS, count, p=domain_shares())
        lengths = np.clip(rng.lognormal(np.log(MEDIAN_WORDS), 0.6, count), 5, 600).astype(int)
        ranks = np.minimum(rng.zipf(1.4, lengths.sum()) - 1, 2 * WORDS_PER_DOMAIN - 1)
        words = vocabulary[(np.repeat(domain, lengths) * WORDS_PER_DOMAIN + ranks) % len(vocabulary)].tolist()
        ends = np.cumsum(lengths)
        texts = [" ".join(words[end - n:end]) for end, n in zip(ends, lengths)]
        ids = [hashlib.blake2b(f"{seed}:{first + i}".encode(), digest_size=8).hexdigest() for i in range(count)]
        paths.append(folder / f"part-{first // FILE_DOCS:04d}.parquet")
        pd.DataFrame({"id": ids, "domain": [f"d{d:02d}" for d in domain], "text": texts}).to_parquet(paths[-1])
    return paths


def _proportional_bytes(process: psutil.Process) -> int:
    """The process's proportional set size (PSS): a page shared by n processes counts 1/n, so the Python workers
    PySpark forks from one daemon are not counted several times over; RSS where PSS is not available."""
    try:
        return process.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return process.memory_info().rss


class PeakMemory:
    """Samples, in a thread, the memory of this process and all its descendants (in total, and the peak of each
    part: this Python driver, the JVM, the Python workers) and the JVM heap in use."""

    def __init__(self, spark, interval: float = 0.2) -> None:
        self.spark, self.interval = spark, interval
        self.peaks = {"tree": 0, "python": 0, "jvm": 0, "workers": 0, "heap": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _parts(self, root: psutil.Process) -> dict:
        parts = {"python": _proportional_bytes(root), "jvm": 0, "workers": 0}
        for process in root.children(recursive=True):
            try:
                part = "jvm" if process.name().startswith("java") else "workers"
                parts[part] += _proportional_bytes(process)
            except psutil.Error:
                pass
        return parts

    def _sample(self) -> None:
        root = psutil.Process()
        runtime = self.spark._jvm.java.lang.Runtime.getRuntime()  # benchmark only: job code never uses _jvm
        ticks = 0
        while not self._stop.is_set():
            parts = self._parts(root)
            parts["tree"] = sum(parts.values())
            if ticks % 5 == 0:
                parts["heap"] = runtime.totalMemory() - runtime.freeMemory()
            self.peaks = {key: max(value, parts.get(key, 0)) for key, value in self.peaks.items()}
            ticks += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def mib(self) -> dict:
        return {f"{key}_mb": round(value / 2**20) for key, value in self.peaks.items()}


# A local-mode driver runs the executors' work too; these keep what that work leaves behind from piling up:
# a serial collector and a smaller code cache beside the heap; Netty's buffer pools (Spark's network and the
# Arrow buffers that carry batches to and from Python workers) in one direct arena of 1 MiB chunks, so a
# larger buffer is allocated and freed rather than pooled; the JDK's per-thread cache of temporary direct
# buffers capped at 256 KiB a buffer; shuffle and RPC buffers on the heap (capped) rather than in direct
# memory (not capped); and Python workers that exit after their task instead of idling with their models
# loaded. The last costs time: every task starts a worker and loads its models again. The heap is committed
# and touched whole at start (-Xms as large as the heap), so the JVM's share is set by spark.driver.memory
# and not by how much of it a corpus happens to fill.
SMALL_DRIVER_CONF = {"spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:ReservedCodeCacheSize=96m "
                                                      "-Dio.netty.allocator.numDirectArenas=1 "
                                                      "-Dio.netty.allocator.maxOrder=7 "
                                                      "-Djdk.nio.maxCachedBufferSize=262144 -XX:+AlwaysPreTouch",
                     "spark.network.io.preferDirectBufs": "false", "spark.shuffle.io.preferDirectBufs": "false",
                     "spark.python.worker.reuse": "false"}
# glibc gives every thread that allocates its own arena of up to 64 MiB: the JVM's and Arrow's threads would
# otherwise each keep one. Read by the JVM and the Python workers, which inherit this process's environment.
SMALL_DRIVER_ENV = {"MALLOC_ARENA_MAX": "2"}


def settings(work: Path, args: argparse.Namespace) -> list[str]:
    spark_conf = {"spark.driver.memory": args.driver_memory, "spark.driver.maxResultSize": args.result_cap,
                  "spark.sql.shuffle.partitions": args.shuffle_partitions, "spark.log.level": "ERROR",
                  "spark.ui.showConsoleProgress": "false", **(SMALL_DRIVER_CONF if args.small_driver else {})}
    fixed_heap = f"-Xms{args.driver_memory}" if args.small_driver else ""
    java_options = " ".join(filter(None, [spark_conf.get("spark.driver.extraJavaOptions"), fixed_heap,
                                          args.java_options]))
    if java_options:
        spark_conf["spark.driver.extraJavaOptions"] = java_options
    encoder = ["diversity.encoder=static", f"diversity.static.path={args.static_path}"] if args.encoder == "static" \
        else [f"diversity.encoder={args.encoder}"]
    return [f"ingest.sources=[{work}/data/*.parquet]", "ingest.format=parquet", "ingest.id_column=id",
            f"ingest.holdout_fraction={args.holdout_fraction}", "engine.kind=jvm-local",
            f"engine.master=local[{args.cores}]", "engine.spark_conf=" + json.dumps(spark_conf),
            "tables.format=parquet", f"tables.warehouse={work}/wh", "diversity.niter=10",
            f"diversity.sample_size={args.sample_size}", *encoder,
            "evaluate.preset=test", "evaluate.seeds=[0]", f"evaluate.out={work}/evaluate", *args.set]


def run_size(n_docs: int, args: argparse.Namespace) -> dict:
    """Every stage at one size in one JVM: {stage: {seconds, tree_mb, heap_mb}}."""
    from samplemix_spark.evaluation.evaluate import evaluate

    work = Path(args.work) / f"scale_{n_docs}"
    started = time.perf_counter()
    write_corpus(work / "data", n_docs)
    # A warehouse left by an earlier run would hand evaluate its stored proxies: every run starts empty.
    for leftover in ("wh", "evaluate"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    print(f"{n_docs:,} documents generated in {time.perf_counter() - started:.0f} s", flush=True)
    cfg = load_config(REPO / "conf" / "local.yaml", settings(work, args))
    spark = build_session(cfg.engine)
    stages = {}
    work_items = [(stage, lambda step=step: run_step(spark, cfg, step)) for stage, step in plan(cfg)]
    if args.evaluate:
        work_items.append(("evaluate", lambda: evaluate(spark, cfg, [cfg.tables.warehouse], ["samplemix"])))
    for stage, work_item in work_items:
        with PeakMemory(spark) as peak:
            started = time.perf_counter()
            work_item()
            seconds = time.perf_counter() - started
        stages[stage] = {"seconds": round(seconds, 1), **peak.mib()}
        print(f"{n_docs:>10,}  {stage:<10} {seconds:8.1f} s  " + "  ".join(
            f"{key[:-3]} {value:>6,} MiB" for key, value in stages[stage].items() if key != "seconds"), flush=True)
    spark.stop()
    return stages


def run_in_own_process(n_docs: int, args: argparse.Namespace, argv: list[str]) -> dict:
    """``run_size`` in a fresh Python process, so each size gets a JVM and a driver of its own, as a job does.

    PySpark keeps its JVM after ``spark.stop()`` and starts the next session in it: in one process the larger
    size would be measured in a JVM that had already grown on the smaller one.
    """
    figures = Path(args.work) / f"scale_{n_docs}.json"
    figures.unlink(missing_ok=True)
    # Later options win: this size alone, its figures to their own file.
    subprocess.run([sys.executable, __file__, *argv, "--sizes", str(n_docs), "--json", str(figures)], check=True)
    return json.loads(figures.read_text())["stages"][str(n_docs)]


def verdicts(small: dict, large: dict, growth: float) -> list[str]:
    """One line per target that the two sizes break; empty when every target holds."""
    broken = []
    for stage, big in large.items():
        time_ratio = big["seconds"] / max(small[stage]["seconds"], 1e-9)
        if big["seconds"] > SLOW_STAGE_S and time_ratio > TIME_GROWTH * growth / 8:
            broken.append(f"{stage}: time grew {time_ratio:.1f}x")
        if big["tree_mb"] / small[stage]["tree_mb"] > MEMORY_GROWTH:
            broken.append(f"{stage}: driver tree grew {big['tree_mb'] / small[stage]['tree_mb']:.2f}x")
        if big["tree_mb"] > MEMORY_CAP_GB * 1024:
            broken.append(f"{stage}: driver tree peaked at {big['tree_mb']:,} MiB")
    return broken


def table(sizes: list[int], results: dict) -> str:
    """A markdown table: per stage the figures at every size and, for two sizes, the ratios."""
    head = ["stage"] + [f"{label} at {n:,}" for n in sizes for label in ("s", "tree MiB", "python / JVM / workers MiB",
                                                                          "heap MiB")]
    if len(sizes) == 2:
        head += ["time ratio", "tree ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage in results[sizes[0]]:
        cells = [stage]
        for n in sizes:
            row = results[n][stage]
            cells += [f"{row['seconds']:.1f}", f"{row['tree_mb']:,}",
                      f"{row['python_mb']:,} / {row['jvm_mb']:,} / {row['workers_mb']:,}", f"{row['heap_mb']:,}"]
        if len(sizes) == 2:
            small, large = results[sizes[0]][stage], results[sizes[1]][stage]
            cells += [f"{large['seconds'] / max(small['seconds'], 1e-9):.2f}",
                      f"{large['tree_mb'] / small['tree_mb']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 2_000_000])
    parser.add_argument("--no-evaluate", dest="evaluate", action="store_false")
    parser.add_argument("--driver-memory", default="1g")
    parser.add_argument("--result-cap", default="64m", help="spark.driver.maxResultSize")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--holdout-fraction", type=float, default=0.01)
    parser.add_argument("--sample-size", type=int, default=200_000,
                        help="diversity.sample_size: below the smaller size, so both sizes collect the same sample")
    parser.add_argument("--encoder", default="static",
                        help="static (distilled once from MiniLM under --static-path) or an encoder folder")
    parser.add_argument("--static-path", default=str(REPO / "out" / "encoders"))
    parser.add_argument("--work", default=str(REPO / "out" / "scale_sim"))
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    parser.add_argument("--java-options", default="", help="more JVM options for the driver, after the others")
    parser.add_argument("--small-driver", action="store_true",
                        help="add SMALL_DRIVER_CONF and SMALL_DRIVER_ENV to the JVM's and PySpark's defaults")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RUST_LOG", "error")
    if args.small_driver:
        os.environ.update(SMALL_DRIVER_ENV)
    if len(args.sizes) == 1:
        results = {args.sizes[0]: run_size(args.sizes[0], args)}
    else:
        results = {n: run_in_own_process(n, args, sys.argv[1:] if argv is None else argv) for n in args.sizes}
    print(table(args.sizes, results))
    broken = verdicts(results[args.sizes[0]], results[args.sizes[1]], args.sizes[1] / args.sizes[0]) \
        if len(args.sizes) == 2 else []
    print("targets: " + ("all hold" if not broken else "; ".join(broken)))
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": args.sizes, "args": vars(args), "stages": results,
                                               "broken": broken}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
