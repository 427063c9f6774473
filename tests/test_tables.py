"""TableStore: locations, overwrite semantics, catalog names and clear errors for missing tables."""

from __future__ import annotations

import pytest

from samplemix_spark.config import TablesConfig
from samplemix_spark.errors import TableError
from samplemix_spark.tables import TableStore


def test_path_locations_and_sql_refs(spark, tmp_path):
    store = TableStore(spark, TablesConfig(warehouse=str(tmp_path), prefix="run1_"))
    assert store.location("weights") == str(tmp_path / "run1_weights")
    assert store.sql_ref("weights") == f"delta.`{tmp_path / 'run1_weights'}`"
    remote = TableStore(spark, TablesConfig(warehouse="s3://bucket/wh/"))
    assert remote.location("output") == "s3://bucket/wh/output"
    catalog = TableStore(spark, TablesConfig(catalog="main.samplemix"))
    assert catalog.location("output") == catalog.sql_ref("output") == "main.samplemix.output"


def test_overwrite_replaces_rows_and_schema(spark, tmp_path):
    store = TableStore(spark, TablesConfig(warehouse=str(tmp_path)))
    store.write(spark.range(10), "quality")
    store.write(spark.range(3).selectExpr("id", "id * 2 AS doubled"), "quality")
    frame = store.read("quality").toPandas().sort_values("id")
    assert frame["doubled"].tolist() == [0, 2, 4]


def test_missing_table_names_the_stage_to_run(spark, tmp_path):
    store = TableStore(spark, TablesConfig(warehouse=str(tmp_path)))
    with pytest.raises(TableError, match=r"table 'weights' not found .* run `samplemix mix` first"):
        store.read("weights")
    with pytest.raises(TableError, match="unknown table"):
        store.location("nonsense")


def test_catalog_tables_and_views(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the embedded engine keeps managed tables
    store = TableStore(spark, TablesConfig(catalog="smx_catalog_test"))
    store.write(spark.range(4), "weights")
    store.write(spark.range(2), "weights")
    assert spark.sql("SELECT COUNT(*) FROM smx_catalog_test.weights").collect()[0][0] == 2


def test_pipeline_in_catalog_mode_creates_persistent_view(spark, tmp_path, monkeypatch):
    from samplemix_spark.demo.synthetic import write_corpus
    from samplemix_spark.pipeline import run_pipeline

    from .conftest import make_config

    monkeypatch.chdir(tmp_path)
    paths = write_corpus(tmp_path / "data", 300, seed=1, n_files=1)
    cfg = make_config(tmp_path / "unused", paths, tables={"catalog": "smx_pipeline_test", "prefix": "a_"})
    run_pipeline(spark, cfg)
    total = spark.sql("SELECT SUM(output_docs) FROM smx_pipeline_test.a_domain_mix").collect()[0][0]
    assert total == spark.table("smx_pipeline_test.a_output").count()
    assert not (tmp_path / "unused").exists()


def test_parquet_overwrite_swaps_in_the_new_table_and_a_failed_write_keeps_the_old(spark, tmp_path):
    from pyspark.sql import functions as F

    store = TableStore(spark, TablesConfig(warehouse=str(tmp_path), format="parquet"))
    store.write(spark.range(10), "quality")
    store.write(spark.range(3).selectExpr("id", "id * 2 AS doubled"), "quality")
    assert sorted(store.read("quality").toPandas()["doubled"]) == [0, 2, 4]

    def fail_midway(batches):
        for batch in batches:
            yield batch
            raise RuntimeError("disk full")

    failing = spark.range(1000).select(F.col("id")).mapInArrow(fail_midway, "id long")
    with pytest.raises(Exception, match="disk full"):
        store.write(failing, "quality")
    assert sorted(store.read("quality").toPandas()["doubled"]) == [0, 2, 4]  # the old table, whole
    assert [p.name for p in tmp_path.iterdir()] == ["quality"]  # no staging or retired folder left
