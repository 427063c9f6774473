"""A Spark standalone cluster on loopback, started from the pyspark installation.

One master and two workers, each its own JVM with its own Python workers, as on
a real multi-executor cluster. Used by ``test_pipeline_parity.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
START_TIMEOUT_S = 120


def cluster_env(spark_home: Path = SPARK_HOME) -> dict[str, str]:
    """The environment of the cluster's JVMs and of spark-submit: loopback only."""
    return {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1"}


def _start(spark_home: Path, main_class: str, args: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as sink:  # the child keeps its own handle
        return subprocess.Popen([str(spark_home / "bin" / "spark-class"), main_class, *args],
                                env=cluster_env(spark_home), stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _log_text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def _master_url(log: Path) -> str | None:
    found = re.search(r"Starting Spark master at (spark://\S+)", _log_text(log))
    return found.group(1) if found else None


def _wait_for(ready, processes: list[subprocess.Popen], folder: Path, deadline: float):
    """Poll ``ready()`` until it returns a value; fail with every log if a process died or time ran out."""
    while not (value := ready()):
        dead = [p.args[1] for p in processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"{log.name}: {log.read_text()[-1500:]}" for log in sorted(folder.glob("*.log")))
            raise RuntimeError(f"the standalone cluster did not start ({dead or 'timeout'}):\n{logs}")
        time.sleep(1)
    return value


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def standalone_cluster(folder: Path, workers: int = 2, memory: str = "2g",
                       spark_home: Path = SPARK_HOME) -> Iterator[str]:
    """Yield the master URL of a running cluster of ``spark_home``'s Spark with ``workers`` one-core workers;
    stop every process after."""
    folder.mkdir(parents=True, exist_ok=True)
    # Port 0 everywhere: each JVM binds a free port itself and logs it, so no port chosen here can be
    # taken by another process (another test's Spark UI) before the JVM binds it.
    master_log = folder / "master.log"
    processes = [_start(spark_home, "org.apache.spark.deploy.master.Master",
                        ["--host", "127.0.0.1", "--port", "0", "--webui-port", "0"], master_log)]
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        url = _wait_for(lambda: _master_url(master_log), processes, folder, deadline)
        worker_logs = [folder / f"worker{index}.log" for index in range(workers)]
        for index, log in enumerate(worker_logs):
            processes.append(_start(spark_home, "org.apache.spark.deploy.worker.Worker",
                                    [url, "--host", "127.0.0.1", "--cores", "1", "--memory", memory,
                                     "--webui-port", "0", "--work-dir", str(folder / f"work{index}")], log))
        _wait_for(lambda: all(f"Successfully registered with master {url}" in _log_text(log) for log in worker_logs),
                  processes, folder, deadline)
        yield url
    finally:
        _stop(processes)
