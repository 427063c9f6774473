"""Many proxies, one per (run, seed): on the driver one after another, or one per Spark task.

Driver side: ``ProxyJob`` describes a proxy (which output or counts files, seed,
preset, budget) and is plain data, so it travels to an executor as JSON.
``staged`` chooses every job's training copies in Spark into the small
``proxy_copies`` table (``stream.stage``) and points the jobs at its files. Their
copies' total bytes come from one Spark aggregate per run or per candidate
(``output_bytes``, ``candidate_bytes``; ``stage`` measures them itself where the
caller did not). ``run_local`` trains the jobs in this process; ``run_on_spark`` builds a
one-row-per-job DataFrame, range-partitions it so that each job gets its own
task, and maps it through a pandas function. A job names files, never carries
text, so the task closure stays small however large the held-out set is.

Executor side: ``run_job`` reads the job's rows of the staged table
(``stream.read_stream``: about its byte budget, never the mix) and its held-out
documents from the ``holdout_scored`` table's files (``holdout.load``), trains
the proxy (``proxy.train``) and returns one row per scored document and
evaluation step, with its speed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from samplemix_spark.evaluation.holdout import HeldOutSpec, load
from samplemix_spark.evaluation.stream import STREAM_VERSION, counted_copies_bytes, output_copies_bytes
from samplemix_spark.tables.files import snapshot_files

log = logging.getLogger(__name__)

CURVE_SCHEMA = ("job long, step long, tokens_seen long, domain string, doc_id string, bytes long, bits double, "
                "subset boolean, seconds double, bytes_per_s double, mfu double, n_params long, epochs double")

CURVE_COLUMNS = [part.split()[0] for part in CURVE_SCHEMA.split(", ")]


@dataclass(frozen=True)
class ProxyJob:
    job: int
    run: str
    files: tuple
    seed: int
    preset: str
    budget_bytes: int
    threads: int
    device: str
    held_out: HeldOutSpec
    # A candidate mix that was never written out: ``files`` are the documents table's
    # files and the counts come from these files' rows of ``candidate``.
    counts_files: tuple = ()
    candidate: int = -1
    copies_bytes: int = 0  # every training copy's bytes, measured on the driver (``copies_bytes``)
    # The ``proxy_copies`` table's files once the stream is staged (``staged``): the job's rows are its stream.
    stream_files: tuple = ()

    def copies(self):
        """Where this job's training copies come from (executor side)."""
        from samplemix_spark.evaluation.stream import Copies

        return Copies(self.files, self.counts_files, self.candidate, self.copies_bytes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ProxyJob":
        data = json.loads(text)
        held_out = HeldOutSpec(**{**data["held_out"], "files": tuple(data["held_out"]["files"])})
        return cls(**{**data, "files": tuple(data["files"]), "counts_files": tuple(data["counts_files"]),
                      "stream_files": tuple(data["stream_files"]), "held_out": held_out})


def output_bytes(store) -> int:
    """Every copy's bytes in ``store``'s output (driver side: one aggregate row)."""
    return output_copies_bytes(store.read("output"))


def candidate_bytes(store, counts_table: str, documents: Optional[DataFrame] = None) -> dict[int, int]:
    """Every candidate's copies' bytes, from ``counts_table`` and the documents (``store``'s unless given)
    (driver side: a row per candidate)."""
    return counted_copies_bytes(store.read(counts_table),
                                store.read("documents") if documents is None else documents)


def by_candidate(counts: DataFrame) -> DataFrame:
    """A counts table's rows grouped by candidate inside each file, so a reader of one candidate (a filter on
    ``candidate``) skips the others' row groups by their statistics."""
    return counts.sortWithinPartitions("candidate", "doc_id")


def run_job(job: ProxyJob, say: Optional[Callable[[str], None]] = None,
            on_evaluation: Optional[Callable[[int, int, float], None]] = None) -> pd.DataFrame:
    """Train one proxy; one row per scored held-out document and evaluation step (``CURVE_SCHEMA``)."""
    from samplemix_spark.evaluation.proxy import PRESETS, SCORE_COLUMNS, train
    from samplemix_spark.evaluation.stream import read_stream

    if not job.stream_files:
        raise ValueError(f"proxy job {job.job} ({job.run}, seed {job.seed}) has no staged stream: pass it "
                         "through swarm.staged first")
    preset = dataclasses.replace(PRESETS[job.preset], budget_bytes=job.budget_bytes)
    stream = read_stream(job.stream_files, job.job, preset.budget_bytes, job.copies_bytes)
    result = train(stream.data, load(job.held_out), preset, job.seed, threads=job.threads, device=job.device,
                   log=say, on_evaluation=on_evaluation)
    curve = pd.DataFrame(result.scores, columns=SCORE_COLUMNS)
    return curve.assign(job=job.job, seconds=result.seconds, bytes_per_s=result.bytes_per_s,
                        mfu=result.mfu if result.mfu is not None else float("nan"), n_params=result.n_params,
                        epochs=stream.epochs)[CURVE_COLUMNS]


def run_local(jobs: list[ProxyJob], first: int = 1, total: Optional[int] = None,
              on_evaluation: Optional[Callable[[int, int, float], None]] = None) -> pd.DataFrame:
    """Train the proxies in this process, one after another, logging progress (``first`` of ``total``)."""
    curves = []
    for i, job in enumerate(jobs, first):
        log.info("evaluate: proxy %d/%d (run %s, seed %d, preset %s)", i, total or len(jobs), job.run, job.seed,
                 job.preset)
        curve = run_job(job, say=lambda line: log.info("evaluate:   %s", line), on_evaluation=on_evaluation)
        log.info("evaluate:   %.0f s, %.0f bytes/s", curve["seconds"].iat[0], curve["bytes_per_s"].iat[0])
        curves.append(curve)
    return pd.concat(curves, ignore_index=True)


class ProxyClock:
    """The time left for ``total`` proxies trained one after another, from the proxies' own pace.

    During the first proxy: its elapsed seconds at its first evaluation, scaled to
    all of its steps (training dominates; the final step also scores every held-out
    document, which the first evaluation's subset underweights). Afterwards: the
    mean wall seconds of the finished proxies, stream building included.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished: list[float] = []
        self.said_first = False

    def first_steps(self, step: int, steps: int, seconds: float) -> Optional[str]:
        """The estimate after the first proxy's first evaluation (None afterwards or before any step)."""
        if self.said_first or self.finished or step <= 0:
            return None
        self.said_first = True
        each = seconds * steps / step
        return (f"evaluate: about {self.total * each / 60:.1f} min for {self.total} proxies "
                f"({each:.0f} s each, from the first proxy's first {step} of {steps} steps)")

    def proxy_done(self, seconds: float) -> str:
        """The time left after a proxy finished in ``seconds``."""
        self.finished.append(seconds)
        left = self.total - len(self.finished)
        each = sum(self.finished) / len(self.finished)
        return (f"evaluate: {len(self.finished)} of {self.total} proxies trained; about {left * each / 60:.1f} min "
                f"left ({each:.0f} s per proxy so far)")


def _train_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The executor function: train every job of the partition (normally one)."""
    for frame in frames:
        for spec in frame["spec"]:
            yield run_job(ProxyJob.from_json(spec))


def run_on_spark(spark: SparkSession, jobs: list[ProxyJob]) -> pd.DataFrame:
    """Train the proxies as Spark tasks, one job per task; only the curves come back."""
    specs = spark.createDataFrame(pd.DataFrame({"job": [j.job for j in jobs], "spec": [j.to_json() for j in jobs]}))
    spread: DataFrame = specs.repartitionByRange(len(jobs), "job")
    log.info("evaluate: %d proxies as Spark tasks", len(jobs))
    return spread.mapInPandas(_train_partition, CURVE_SCHEMA).toPandas()


def fresh_seeds(cfg) -> tuple[int, ...]:
    """The seeds a search's choice is confirmed on: ``tune.confirm_seeds`` of them (as many as
    ``evaluate.seeds`` when unset), after the largest search seed, so none repeats a search proxy."""
    count = len(cfg.evaluate.seeds) if cfg.tune.confirm_seeds is None else cfg.tune.confirm_seeds
    start = max(cfg.evaluate.seeds) + 1
    return tuple(range(start, start + count))


def counted_jobs(cfg, store, counts_table: str, names: list[str], finished: Callable[[int, int], bool],
                 budget: int, held_out: HeldOutSpec, seeds: Optional[tuple] = None,
                 candidates: Optional[list[int]] = None) -> tuple[list[ProxyJob], dict[int, tuple[int, int]]]:
    """Proxies for candidate mixes that were never written out: one per candidate and seed not yet finished.

    Each reads the documents table's current files and its candidate's rows of
    ``counts_table`` (candidate, doc_id, count). ``seeds`` and ``candidates``
    narrow the search's (``evaluate.seeds``, every name), as a confirmation does.
    Returns the jobs and job -> (candidate, seed).
    """
    settings = cfg.evaluate
    chosen = range(len(names)) if candidates is None else candidates
    pending = [(candidate, seed) for candidate in chosen for seed in (seeds or settings.seeds)
               if not finished(candidate, seed)]
    if not pending:  # a resumed search with every proxy stored: no aggregate, no file listing
        return [], {}
    documents, counts = tuple(snapshot_files(store, "documents")), tuple(snapshot_files(store, counts_table))
    sizes = candidate_bytes(store, counts_table)
    jobs = [ProxyJob(i, names[candidate], documents, seed, settings.preset, budget, settings.threads,
                     settings.device, held_out, counts, candidate, sizes.get(candidate, 0))
            for i, (candidate, seed) in enumerate(pending)]
    return jobs, dict(enumerate(pending))


def staged(store, jobs: list[ProxyJob]) -> list[ProxyJob]:
    """``jobs`` with their streams chosen in Spark into ``store``'s ``proxy_copies`` table (driver side;
    ``stream.stage``), so each proxy reads about its budget, never the mix."""
    from samplemix_spark.evaluation.stream import StreamRequest, stage

    placed = stage(store, [StreamRequest(job.job, job.copies(), job.seed, job.budget_bytes) for job in jobs])
    return [dataclasses.replace(job, stream_files=placed[job.job][0], copies_bytes=placed[job.job][1])
            for job in jobs]


def train_recording(store, executor: str, jobs: list[ProxyJob], record: Callable[[pd.DataFrame], None]) -> None:
    """Stage ``jobs``' streams in ``store``, train them and hand each batch of curves to ``record`` as it
    finishes.

    Locally that is after every proxy, so a killed search resumes without retraining
    finished proxies; as Spark tasks, after the whole batch.
    """
    jobs = staged(store, jobs)
    if executor == "local":
        clock = ProxyClock(len(jobs))

        def first_steps(step: int, steps: int, seconds: float) -> None:
            line = clock.first_steps(step, steps, seconds)
            if line:
                log.info(line)

        for i, job in enumerate(jobs, 1):
            started = time.perf_counter()
            record(run_local([job], i, len(jobs), on_evaluation=first_steps))
            log.info(clock.proxy_done(time.perf_counter() - started))
    elif jobs:
        record(run_on_spark(store.spark, jobs))


def scores_fingerprint(store, view=None) -> str:
    """Content of the documents and scores that candidate counts come from: rows and a sum of row hashes.

    ``view`` (``mixing.weights.QualityView``, default: the integer q) says how q is read.
    """
    from pyspark.sql import functions as F

    from samplemix_spark.mixing.weights import QualityView, scored_documents

    # d joins when the warehouse has it; a QuaDMix warehouse may have none.
    scored = scored_documents(store, view or QualityView(), diversity=False)
    row = scored.agg(F.count(F.lit(1)).alias("n"), F.sum(F.shiftrightunsigned(
        F.xxhash64("doc_id", "domain", "n_tokens", "q", "d"), 33)).alias("h")).collect()[0]
    return f"{row['n']}:{int(row['h'] or 0):x}"


def _later_default(key: str, value) -> bool:
    """A mixing setting added after proxies were first stored, at its default: left out of fingerprints,
    so stored proxies stay valid across the upgrade that added it."""
    from samplemix_spark.config import MixingConfig

    later = {"rounding", "quadmix", "quality_source"}
    return key in later and value == dataclasses.asdict(MixingConfig())[key]


def proxy_fingerprint(cfg, store, holdout: str, searched: tuple, extra: Optional[dict] = None) -> str:
    """Everything besides the ``searched`` mixing settings that changes a candidate proxy's loss, as one hash.

    The other mixing settings, the documents and their scores, the held-out set,
    the preset, byte budget, threads, device, the held-out scoring settings and the
    stream's order (``stream.STREAM_VERSION``);
    ``extra``: what else the caller's stored rows depend on.
    """
    import hashlib

    from samplemix_spark.models.proxy_presets import PRESETS
    from samplemix_spark.mixing.weights import quality_view

    ev = cfg.evaluate
    mixing = {k: v for k, v in dataclasses.asdict(cfg.mixing).items()
              if k not in searched and not _later_default(k, v)}
    view = quality_view(cfg) if cfg.quality.method == "perplexity" else None  # others: as stored proxies hash it
    parts = {"mixing": mixing, "scores": scores_fingerprint(store, view), "holdout": holdout, "preset": ev.preset,
             "budget": ev.budget_bytes or PRESETS[ev.preset].budget_bytes, "threads": ev.threads,
             "device": ev.device, "doc_bytes": ev.doc_bytes, "max_eval_docs": ev.max_eval_docs,
             "step_docs": ev.step_docs, "stream": STREAM_VERSION, **(extra or {})}
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()
