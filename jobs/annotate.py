"""spark-submit entry point for the annotate job: `spark-submit jobs/annotate.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["annotate", *sys.argv[1:]]))
