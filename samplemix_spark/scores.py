"""Scores that arrive with the data: the ``column`` method of quality and diversity."""

from __future__ import annotations

from typing import Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.engine.progress import Progress
from samplemix_spark.errors import ConfigError
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.per_document import PerDocumentStep


class InputScoreStep(PerDocumentStep):
    """Copy a score column carried by ``documents`` into a table keyed by doc_id.

    ``name`` is both the stage and the output table (``quality`` or ``diversity``);
    the score column of that table has the same name. Ingest has already rejected
    rows whose score is null, NaN or infinite.
    """

    source = "documents"

    def __init__(self, name: str, input_column: str) -> None:
        self.name = name
        self.output = name
        self.input_column = input_column

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        if self.input_column not in rows.columns:
            raise ConfigError(f"config key '{self.name}.method': 'column' needs the documents table "
                              f"to carry {self.input_column}; set the ingest column and rerun ingest")
        return rows.select("doc_id", F.col(self.input_column).cast("double").alias(self.name),
                           F.lit("column").alias("method"))
