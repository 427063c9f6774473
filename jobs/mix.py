"""spark-submit entry point for the mix stage: `spark-submit jobs/mix.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["mix", *sys.argv[1:]])
