"""spark-submit entry point for the embed stage: `spark-submit jobs/embed.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["embed", *sys.argv[1:]])
