"""spark-submit entry point for the annotate job: `spark-submit jobs/annotate.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["annotate", *sys.argv[1:]])
