"""spark-submit entry point for comparing runs: `spark-submit jobs/compare.py RUN_A RUN_B --out ...`."""
import sys

from samplemix_spark.cli import run

run(["compare", *sys.argv[1:]])
