"""Engine selection: one function builds the SparkSession from config."""

from samplemix_spark.engine.session import build_session, resolve_engine_kind

__all__ = ["build_session", "resolve_engine_kind"]
