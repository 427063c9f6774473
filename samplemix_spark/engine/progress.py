"""Progress lines from inside the long per-row stages: ingest's reader, embed, quality scoring, assign.

Spark Connect has no accumulators and no status tracker, so the functions that
run on executors count their own work. ``Progress`` is plain data that travels
in a UDF's closure; each Python process keeps one counter per stage run and
writes a line every ``interval`` seconds (``SAMPLEMIX_PROGRESS_S``, default 10):
units done, units per second and, where the total is known to this process, the
share done and the time left. The model stages count each forward pass, so a
line is due even inside one large Arrow batch. The clock starts when the driver
builds the stage; a stage shorter than the interval writes no line (its end line
says it all).

- Embedded engine: the UDFs run in the driver's own process, so the one counter
  sees every row and the lines reach the job's log with the exact total.
- A cluster: each executor's Python worker counts its own rows and writes its
  lines, without a total, to that executor's stderr (the Spark UI's executor
  log), at batch granularity; the driver's log gets the stage's start and end.

A stage that reads its input again (ingest reads its sources once to check them
and once per table it writes) starts a new count when the previous one reached
the total.

Passes with no Python code per row (native writes, joins, aggregates) cannot
count rows, so ``heartbeat`` (driver side, around every stage) writes a line at
the same interval naming the stage, its current pass (``in_pass``; the table
store marks each table write) and the time so far, unless a progress line was
written within the interval. A job never goes silent for longer than that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

log = logging.getLogger("samplemix_spark")

INTERVAL_ENV = "SAMPLEMIX_PROGRESS_S"
DEFAULT_INTERVAL_S = 10.0
_RATE_LABEL = {"documents": "docs"}


@dataclass
class _Counter:
    started: float
    last: float
    done: int = 0


_counters: dict[str, _Counter] = {}
_lock = threading.Lock()
_last_line = [0.0]  # when this process last wrote a progress line (time.time())
_passes: list[tuple[str, float]] = []  # the driver's current passes, innermost last: (name, started)
# A heartbeat thread wakes at least this often, whatever the interval (tests set tiny intervals).
_MIN_HEARTBEAT_S = 0.05


def interval_s() -> float:
    """Seconds between lines (``SAMPLEMIX_PROGRESS_S``; 0 turns the lines off)."""
    return float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))


@dataclass(frozen=True)
class Progress:
    """One stage run's progress; built on the driver, updated wherever its UDF runs."""

    stage: str
    total: int
    unit: str = "documents"
    run_id: str = field(default_factory=lambda: f"{os.getpid()}-{time.time_ns()}")
    interval: float = field(default_factory=interval_s)
    started: float = field(default_factory=time.time)  # wall clock: executors share it, roughly

    def add(self, done: int, now: Optional[float] = None) -> Optional[str]:
        """Count ``done`` more units; return (and write) a progress line when one is due."""
        if self.interval <= 0:
            return None
        now = time.time() if now is None else now
        with _lock:
            counter = _counters.get(self.run_id)
            if counter is None:
                counter = _counters[self.run_id] = _Counter(self.started, self.started)
            elif self.total and counter.done >= self.total:
                counter = _counters[self.run_id] = _Counter(now, now)
            counter.done += done
            if now - counter.last < self.interval:
                return None
            counter.last = now
            line = self._line(counter.done, now - counter.started)
        self._write(line)
        return line

    def _in_driver(self) -> bool:
        return os.getpid() == int(self.run_id.split("-")[0])

    def _line(self, done: int, seconds: float) -> str:
        rate = done / seconds if seconds > 0 else 0.0
        per_second = f"{rate:,.{1 if rate < 10 else 0}f} {_RATE_LABEL.get(self.unit, self.unit)}/s"
        if not self._in_driver():  # an executor's worker sees its own rows only
            return f"{self.stage}: {done:,} {self.unit} in this worker, {per_second}"
        if not self.total:
            return f"{self.stage}: {done:,} {self.unit}, {per_second}"
        share = done / self.total if self.total else 0.0
        left = (self.total - done) / rate if rate > 0 else float("nan")
        return (f"{self.stage}: {done:,} of {self.total:,} {self.unit} ({share:.0%}), {per_second}, "
                f"about {left:,.0f} s left")

    def _write(self, line: str) -> None:
        _last_line[0] = time.time()
        if self._in_driver():
            log.info(line)
        else:  # a Python worker has no logging set up; its stderr is the executor's log
            print(f"samplemix_spark: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def in_pass(name: str) -> Iterator[None]:
    """Mark a pass of the running stage (driver side), for the heartbeat's lines."""
    _passes.append((name, time.time()))
    try:
        yield
    finally:
        _passes.pop()


def heartbeat_line(stage: str, stage_started: float, now: float) -> str:
    """``<stage>: <current pass>, <s> s in this pass, <s> s in the stage``."""
    if not _passes:
        return f"{stage}: running, {now - stage_started:,.0f} s in the stage"
    name, started = _passes[-1]
    return f"{stage}: {name}, {now - started:,.0f} s in this pass, {now - stage_started:,.0f} s in the stage"


@contextlib.contextmanager
def heartbeat(stage: str, interval: Optional[float] = None) -> Iterator[None]:
    """While the block runs, a line every ``interval`` seconds with no progress line (driver side)."""
    every = interval_s() if interval is None else interval
    if every <= 0:
        yield
        return
    stop, started = threading.Event(), time.time()

    def beat() -> None:
        while not stop.wait(max(every, _MIN_HEARTBEAT_S)):
            now = time.time()
            if now - _last_line[0] >= every:
                _last_line[0] = now
                log.info(heartbeat_line(stage, started, now))

    thread = threading.Thread(target=beat, name=f"heartbeat-{stage}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
