"""spark-submit entry point for the assign stage: `spark-submit jobs/assign.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["assign", *sys.argv[1:]])
