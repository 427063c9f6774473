"""Ingest: raw JSONL/Parquet/Delta sources -> documents and rejects tables."""

from samplemix_spark.ingest.step import IngestStep

__all__ = ["IngestStep"]
