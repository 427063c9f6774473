"""Table names, format and location, and atomic overwrites."""

from samplemix_spark.tables.store import TABLES, TableStore

__all__ = ["TABLES", "TableStore"]
