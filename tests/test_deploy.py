"""Deployment files parse and point at entry points and configs that exist."""

from __future__ import annotations

import json
import subprocess

import yaml

from samplemix_spark.config import load_config

from .conftest import REPO


def test_databricks_bundle_tasks_reference_existing_jobs_in_pipeline_order():
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text())
    assert bundle["bundle"]["name"] == "samplemix-spark"
    job = yaml.safe_load((REPO / "resources" / "samplemix_job.yml").read_text())["resources"]["jobs"]["samplemix"]
    clusters = {c["job_cluster_key"] for c in job["job_clusters"]}
    previous = None
    for task in job["tasks"]:
        assert task["job_cluster_key"] in clusters
        assert (REPO / "resources" / task["spark_python_task"]["python_file"]).resolve().is_file()
        assert [d["task_key"] for d in task.get("depends_on", [])] == ([previous] if previous else [])
        previous = task["task_key"]
    gpu_tasks = {t["task_key"] for t in job["tasks"] if t["job_cluster_key"] == "gpu"}
    assert gpu_tasks == {"quality", "embed"}
    load_config(REPO / "conf" / "databricks.yaml")


def test_databricks_refresh_job_runs_the_incremental_pipeline_on_a_schedule():
    from samplemix_spark.cli import build_parser

    job = yaml.safe_load((REPO / "resources" / "samplemix_job.yml").read_text())["resources"]["jobs"]
    refresh = job["samplemix_refresh"]
    assert refresh["schedule"]["quartz_cron_expression"] and refresh["max_concurrent_runs"] == 1
    (task,) = refresh["tasks"]
    assert (REPO / "resources" / task["spark_python_task"]["python_file"]).resolve().name == "run_pipeline.py"
    args = build_parser().parse_args(["run", *task["spark_python_task"]["parameters"]])
    assert args.incremental and not args.force


def test_emr_step_runs_an_existing_job_with_the_packed_environment():
    steps = json.loads((REPO / "emr" / "steps.json").read_text())
    args = steps[0]["HadoopJarStep"]["Args"]
    assert args[0] == "spark-submit" and any(a.endswith("#environment") for a in args)
    job = next(a for a in args if a.endswith(".py")).rsplit("/", 1)[1]
    assert (REPO / "jobs" / job).is_file()
    load_config(REPO / "conf" / "emr.yaml")


def test_build_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(REPO / "build.sh")]).returncode == 0


# What every shipped cluster sets so the driver stays small and shuffles follow the input (docs/scaling.md).
SCALING_CONF = {"spark.driver.maxResultSize": "4g", "spark.sql.execution.arrow.pyspark.enabled": "true",
                "spark.sql.adaptive.enabled": "true", "spark.sql.adaptive.coalescePartitions.enabled": "true",
                "spark.sql.adaptive.advisoryPartitionSizeInBytes": "256m", "spark.sql.shuffle.partitions": "4000"}


def test_every_shipped_cluster_bounds_the_driver_and_sizes_shuffles_to_the_input():
    jobs = yaml.safe_load((REPO / "resources" / "samplemix_job.yml").read_text())["resources"]["jobs"]
    clusters = [c["new_cluster"] for job in jobs.values() for c in job["job_clusters"]]
    assert len(clusters) == 3
    for cluster in clusters:
        assert {k: cluster["spark_conf"].get(k) for k in SCALING_CONF} == SCALING_CONF
    args = json.loads((REPO / "emr" / "steps.json").read_text())[0]["HadoopJarStep"]["Args"]
    given = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")
    assert {k: given.get(k) for k in SCALING_CONF} == SCALING_CONF
    # The writer lease is a Delta MERGE, which classic Spark parses only with Delta's SQL extension.
    assert given["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
