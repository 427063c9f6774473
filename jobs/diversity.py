"""spark-submit entry point for the diversity stage: `spark-submit jobs/diversity.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["diversity", *sys.argv[1:]]))
