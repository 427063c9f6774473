"""Proxies already trained: the ``proxy_eval_curves`` table, so an evaluation never trains one twice. Driver side.

``samplemix evaluate`` and the benchmark studies built on it train one proxy per
(run, seed, preset). Each proxy's rows (one per scored held-out document and
evaluation step, ``swarm.CURVE_SCHEMA``) are stored as soon as it finishes,
under a fingerprint of everything that decides them:

- the mix it trains on: the run's ``mix_run`` record (method, settings, budget,
  achieved totals, held-out fingerprint, hash scheme) and the content of the
  scored documents it was drawn from (``swarm.scores_fingerprint``); mixing is
  deterministic, so a run mixed again from the same scores gives the same proxy;
- the seed, the preset (its name and every hyperparameter), the byte budget,
  threads and device;
- the held-out scoring: ``evaluate.doc_bytes``, ``max_eval_docs``, ``step_docs``;
- the stream's order (``stream.STREAM_VERSION``): proxies stored under an earlier
  order train once more.

A proxy whose fingerprint is stored is read back instead of trained (training is
deterministic on CPU, so the rows are the ones it would produce), a killed
evaluation resumes at the next proxy, and a study that adds runs or seeds trains
only those. Rows under other fingerprints stay: several studies may share a
warehouse. The run names are not part of the fingerprint, so renaming a run
retrains nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Callable, Optional

import pandas as pd

from samplemix_spark.evaluation.stream import STREAM_VERSION
from samplemix_spark.evaluation.swarm import CURVE_COLUMNS, CURVE_SCHEMA, ProxyJob, train_recording
from samplemix_spark.models.proxy_presets import PRESETS
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)

TABLE = "proxy_eval_curves"
SCHEMA = "fingerprint string, " + CURVE_SCHEMA.split(", ", 1)[1]
STORED_COLUMNS = ["fingerprint", *CURVE_COLUMNS[1:]]


# mix_run fields added after proxies were first stored, with their defaults: a field at its default is
# left out of the identity, so proxies stored before it existed keep their fingerprints.
LATER_FIELDS = {"rounding": "bernoulli", "parameters": "", "quality_source": "integer"}


def mix_identity(stats, scores: str) -> str:
    """What a run's output is, by content: its ``mix_run`` record and the fingerprint of the scores it was
    mixed from (``swarm.scores_fingerprint`` of its inputs)."""
    record = {k: v for k, v in dataclasses.asdict(stats).items()
              if k != "inputs" and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
    return json.dumps({"mix": record, "scores": scores}, sort_keys=True, default=str)


def fingerprint(job: ProxyJob, identity: str) -> str:
    """The fingerprint of one proxy: its mix's identity and every setting that changes its rows."""
    spec = job.held_out
    parts = {"mix": identity, "seed": job.seed, "preset": dataclasses.asdict(PRESETS[job.preset]),
             "budget": job.budget_bytes, "threads": job.threads, "device": job.device,
             "doc_bytes": spec.doc_bytes, "max_docs": spec.max_docs, "step_docs": spec.step_docs,
             "stream": STREAM_VERSION}
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=8).hexdigest()


def stored(store: TableStore) -> pd.DataFrame:
    """Every stored proxy's rows (empty when the warehouse has none)."""
    table = store.read_if_exists(TABLE)
    return pd.DataFrame(columns=STORED_COLUMNS) if table is None else table.toPandas()[STORED_COLUMNS]


def plan_line(what: str, n_total: int, jobs: list[ProxyJob], executor: str) -> str:
    """One line before training: how many proxies, how many stored, how many to train.

    The time estimate comes later, from the proxies' own steps (``swarm.ProxyClock``):
    a timing taken at start-up, before the data and threads are warm, was off by 2-5x.
    """
    if not jobs:
        return f"{what}: {n_total} proxies ({n_total} stored); 0 to train"
    job = jobs[0]
    return (f"{what}: {n_total} proxies of {job.budget_bytes:,} bytes, preset {job.preset} "
            f"({n_total - len(jobs)} stored); {len(jobs)} to train {executor}; the time left is estimated from "
            "the first proxy's first steps and updated as proxies finish")


def missing(rows: pd.DataFrame, jobs: list[ProxyJob], prints: dict[int, str]) -> list[ProxyJob]:
    """The jobs still to train: one per fingerprint that ``rows`` (``stored``) lacks."""
    todo, seen = [], set(rows["fingerprint"])
    for job in jobs:
        if prints[job.job] not in seen:
            seen.add(prints[job.job])
            todo.append(job)
    return todo


def train_missing(store: TableStore, jobs: list[ProxyJob], prints: dict[int, str], executor: str,
                  what: str = "evaluate",
                  prepare: Optional[Callable[[list[ProxyJob]], list[ProxyJob]]] = None) -> pd.DataFrame:
    """The curve rows (``CURVE_COLUMNS``) of every job: stored ones read back, the others trained and stored.

    ``prints``: job -> fingerprint. Jobs that share a fingerprint train once.
    ``prepare`` completes the jobs to train (say, with their copies' bytes), so
    work that only training needs is skipped when every proxy is stored.
    """
    rows = stored(store)
    todo = missing(rows, jobs, prints)
    if prepare is not None and todo:
        todo = prepare(todo)
    log.info(plan_line(what, len(set(prints.values())), todo, executor))
    kept = {"rows": rows}

    def record(curves: pd.DataFrame) -> None:
        new = curves.assign(fingerprint=curves["job"].map(prints))[STORED_COLUMNS]
        kept["rows"] = pd.concat([kept["rows"], new], ignore_index=True) if len(kept["rows"]) else new
        store.write(store.spark.createDataFrame(kept["rows"], SCHEMA), TABLE)

    train_recording(store, executor, todo, record)
    wanted = pd.DataFrame({"job": list(prints), "fingerprint": list(prints.values())})
    return wanted.merge(kept["rows"], on="fingerprint")[CURVE_COLUMNS]
