"""spark-submit entry point for the report stage: `spark-submit jobs/report.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["report", *sys.argv[1:]])
