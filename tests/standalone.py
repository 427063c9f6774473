"""A Spark standalone cluster on loopback, started from the pyspark installation.

One master and two workers, each its own JVM with its own Python workers, as on
a real multi-executor cluster. Used by ``test_pipeline_parity.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
SPARK_SUBMIT = SPARK_HOME / "bin" / "spark-submit"
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env() -> dict[str, str]:
    """The environment of the cluster's JVMs and of spark-submit: loopback only."""
    return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}


def _start(main_class: str, args: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as sink:  # the child keeps its own handle
        return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), main_class, *args], env=cluster_env(),
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as answer:
            return int(json.load(answer).get("aliveworkers", 0))
    except OSError:
        return 0


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
def standalone_cluster(folder: Path, workers: int = 2, memory: str = "2g") -> Iterator[str]:
    """Yield the master URL of a running cluster with ``workers`` one-core workers; stop every process after."""
    folder.mkdir(parents=True, exist_ok=True)
    port, ui_port = _free_port(), _free_port()
    processes = [_start("org.apache.spark.deploy.master.Master",
                        ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)],
                        folder / "master.log")]
    url = f"spark://127.0.0.1:{port}"
    try:
        for index in range(workers):
            processes.append(_start("org.apache.spark.deploy.worker.Worker",
                                    [url, "--host", "127.0.0.1", "--cores", "1", "--memory", memory,
                                     "--webui-port", str(_free_port()), "--work-dir", str(folder / f"work{index}")],
                                    folder / f"worker{index}.log"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while _alive_workers(ui_port) < workers:
            dead = [p.args[1] for p in processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"{log.name}: {log.read_text()[-1500:]}" for log in sorted(folder.glob("*.log")))
                raise RuntimeError(f"the standalone cluster did not start ({dead or 'timeout'}):\n{logs}")
            time.sleep(1)
        yield url
    finally:
        _stop(processes)
