"""Read the raw corpus and map its columns onto the document schema (driver side).

Local globs are expanded here rather than by the engine: some engines return an
empty frame for a glob that matches nothing, which would silently produce an
empty training set. A source ``table:catalog.schema.name`` is read with the
engine's table reader (Unity Catalog, a Hive metastore, the embedded engine's
catalog), whatever ``ingest.format`` says.
"""

from __future__ import annotations

from functools import reduce
from typing import Optional

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, NumericType, StringType, StructType

from samplemix_spark.config import IngestConfig
from samplemix_spark.errors import InputError
from samplemix_spark.tables.files import read_table, resolve_sources, split_sources


def read_sources(spark: SparkSession, sources: list[str], fmt: str) -> DataFrame:
    """Read every source (paths or globs of format ``fmt``, catalog tables) into one DataFrame."""
    paths, tables = split_sources(sources)
    frames = [read_table(spark, name) for name in tables]
    if paths and fmt != "delta":
        frames.insert(0, spark.read.format(fmt).load(resolve_sources(paths)))
    elif paths:
        # A Delta table is one path: read each and stack them.
        frames[:0] = [spark.read.format("delta").load(path) for path in resolve_sources(paths)]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _field_type(schema: StructType, dotted: str) -> Optional[DataType]:
    """The type of a possibly nested field such as ``meta.redpajama_set_name``, or None."""
    current: DataType = schema
    for part in dotted.split("."):
        if not isinstance(current, StructType) or part not in current.fieldNames():
            return None
        current = current[part].dataType
    return current


def _column(df: DataFrame, dotted: str, key: str, expected: Optional[type] = None) -> Column:
    data_type = _field_type(df.schema, dotted)
    if data_type is None:
        raise InputError(f"config key '{key}': column {dotted!r} not found in the source; "
                         f"source schema: {df.schema.simpleString()}")
    if expected is not None and not isinstance(data_type, expected):
        raise InputError(f"config key '{key}': column {dotted!r} has type "
                         f"{data_type.simpleString()}, expected {expected.__name__.replace('Type', '').lower()}")
    parts = dotted.split(".")
    column = F.col(parts[0])
    for part in parts[1:]:
        column = column.getField(part)
    return column


def map_columns(df: DataFrame, cfg: IngestConfig, read_domain: bool = True) -> DataFrame:
    """Select the mapped columns as ``source_id, domain, text, q_input, d_input``.

    The id, quality and diversity columns are optional; absent ones become nulls
    of the right type so that the rest of ingest has one schema to work with.
    """
    text = _column(df, cfg.text_column, "ingest.text_column", StringType)
    domain = (_column(df, cfg.domain_column, "ingest.domain_column").cast("string") if read_domain
              else F.lit(None).cast("string"))
    source_id = (_column(df, cfg.id_column, "ingest.id_column").cast("string")
                 if cfg.id_column else F.lit(None).cast("string"))
    scores = {}
    for name, key in (("q_input", "quality_column"), ("d_input", "diversity_column")):
        column_name = getattr(cfg, key)
        scores[name] = (_column(df, column_name, f"ingest.{key}", NumericType).cast("double")
                        if column_name else F.lit(None).cast("double"))
    extra = [F.array(*[_column(df, name, "ingest.score_columns", NumericType).cast("double")
                       for name in cfg.score_columns]).alias("extra")] if cfg.score_columns else []
    labels = [F.array(*[_column(df, name, "ingest.text_columns").cast("string")
                        for name in cfg.text_columns]).alias("labels")] if cfg.text_columns else []
    return df.select(source_id.alias("source_id"), domain.alias("domain"), text.alias("text"),
                     scores["q_input"].alias("q_input"), scores["d_input"].alias("d_input"), *extra, *labels)
