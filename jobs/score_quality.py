"""spark-submit entry point for the score-quality job: `spark-submit jobs/score_quality.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["score-quality", *sys.argv[1:]])
