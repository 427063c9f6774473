"""spark-submit entry point for the quality stage: `spark-submit jobs/quality.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["quality", *sys.argv[1:]]))
