"""spark-submit entry point for the quality stage: `spark-submit jobs/quality.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["quality", *sys.argv[1:]])
