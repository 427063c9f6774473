"""spark-submit entry point for the embed stage: `spark-submit jobs/embed.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["embed", *sys.argv[1:]]))
