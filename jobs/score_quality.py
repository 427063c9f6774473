"""spark-submit entry point for the score-quality job: `spark-submit jobs/score_quality.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["score-quality", *sys.argv[1:]]))
