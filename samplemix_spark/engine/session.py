"""Build the SparkSession every job runs on.

Job code only uses the Spark Connect-compatible DataFrame/SQL API, so the same
functions run on all four engines:

- ``embedded``: a Sail (``pysail``) Spark Connect server started in this process on
  loopback. No JVM, real Delta tables. Python UDFs run inside this interpreter.
- ``jvm-local``: classic PySpark ``local[*]``. Without Delta jars use ``tables.format: parquet``.
- ``remote``: any Spark Connect server (``sc://host:port``).
- ``existing``: ``SparkSession.builder.getOrCreate()``, i.e. the session spark-submit,
  Databricks or EMR already configured.

``auto`` picks ``existing`` under spark-submit or Databricks, ``remote`` when
``SPARK_REMOTE`` is set, and ``embedded`` otherwise.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import NoReturn

from pyspark.sql import SparkSession

from samplemix_spark.config import EngineConfig
from samplemix_spark.errors import ConfigError

log = logging.getLogger(__name__)

_server_lock = threading.Lock()
_embedded_server = None


def resolve_engine_kind(kind: str) -> str:
    """Turn ``auto`` into a concrete engine kind from the process environment."""
    if kind != "auto":
        return kind
    if os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return "existing"
    if os.environ.get("SPARK_REMOTE"):
        return "remote"
    return "embedded"


def pyspark_version() -> str:
    import pyspark

    return pyspark.__version__


def build_session(cfg: EngineConfig) -> SparkSession:
    """Return a SparkSession for ``cfg``; runs on the driver."""
    kind = resolve_engine_kind(cfg.kind)
    log.info("engine: %s (pyspark %s)", kind, pyspark_version())
    if kind == "embedded":
        builder = SparkSession.builder.remote(_embedded_url())
    elif kind == "remote":
        builder = SparkSession.builder.remote(cfg.remote_url or os.environ["SPARK_REMOTE"])
    elif kind == "jvm-local":
        _use_driver_python_for_workers()
        builder = (SparkSession.builder.master(cfg.master)
                   .config("spark.ui.enabled", "false")
                   .config("spark.sql.session.timeZone", "UTC"))
    elif kind == "existing":
        if os.environ.get("PYSPARK_GATEWAY_PORT"):  # spark-submit: the session is a classic one
            _drop_inherited_connect_mode()
        builder = SparkSession.builder
    else:  # config validation makes this unreachable; kept for direct callers
        raise ConfigError(f"config key 'engine.kind': unknown engine {kind!r}")
    builder = builder.appName(cfg.app_name)
    for key, value in cfg.spark_conf.items():
        builder = builder.config(key, str(value))
    return builder.getOrCreate()


def _drop_inherited_connect_mode() -> None:
    # pyspark's builder turns into a Spark Connect builder when this variable is set,
    # e.g. inherited from a parent process that opened a Connect session.
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)


def _use_driver_python_for_workers() -> None:
    _drop_inherited_connect_mode()
    # Classic PySpark starts worker processes with `python3` from PATH unless told
    # otherwise; that interpreter may lack this project's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


SAIL_SESSION_TIMEOUT_ENV = "SAIL_SPARK__SESSION_TIMEOUT_SECS"
SAIL_SESSION_TIMEOUT_S = 30 * 24 * 3600
# The embedded engine logs through RUST_LOG. Neither its shutdown notice nor its notice that a join hint
# is a no-op (the jobs hint broadcasts that JVM Spark follows and Sail plans itself) is a warning for users.
SAIL_LOG = "warn,sail_common::actor=error,sail_plan::resolver::query::misc=error"


def _embedded_url() -> str:
    """Start (once per process) a Sail server on loopback and return its sc:// URL."""
    global _embedded_server
    with _server_lock:
        if _embedded_server is None:
            os.environ.setdefault("RUST_LOG", SAIL_LOG)
            try:
                from pysail.spark import SparkConnectServer
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ConfigError("config key 'engine.kind': the embedded engine needs pysail; "
                                  "install samplemix-spark[local]") from exc
            # Sail ends a session after 30 idle minutes by default. Proxy training and
            # k-means run on the driver for longer than that without a Spark call, and
            # the server belongs to this process, so the session lives as long as it.
            os.environ.setdefault(SAIL_SESSION_TIMEOUT_ENV, str(SAIL_SESSION_TIMEOUT_S))
            server = SparkConnectServer(ip="127.0.0.1", port=0)
            server.start(background=True)
            atexit.register(server.stop)
            _embedded_server = server
        host, port = _embedded_server.listening_address
    return f"sc://{host}:{port}"


def exit_process(code: int) -> NoReturn:
    """End this process with ``code``; runs on the driver, as the last thing a command does.

    With the embedded engine, Sail's executor threads live in this interpreter. A Python
    UDF that has just raised (a bad source file, say) may still be unwinding on one of
    them when the driver returns, and if CPython's finalisation starts then, glibc aborts
    the process (lakehq/sail#2471) and a clean exit code 2 becomes a SIGABRT. Every table
    is committed by the time a command returns, so the process flushes its output, runs
    its exit handlers and leaves without finalising the interpreter.
    """
    if _embedded_server is None:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    os._exit(code)
