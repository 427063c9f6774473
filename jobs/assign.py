"""spark-submit entry point for the assign stage: `spark-submit jobs/assign.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["assign", *sys.argv[1:]]))
