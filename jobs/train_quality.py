"""spark-submit entry point for the train-quality job: `spark-submit jobs/train_quality.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["train-quality", *sys.argv[1:]])
