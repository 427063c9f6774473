"""spark-submit entry point for the whole pipeline: `spark-submit jobs/run_pipeline.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["run", *sys.argv[1:]])
