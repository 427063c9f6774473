"""spark-submit entry point for the diversity stage: `spark-submit jobs/diversity.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["diversity", *sys.argv[1:]])
