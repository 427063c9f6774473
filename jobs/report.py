"""spark-submit entry point for the report stage: `spark-submit jobs/report.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["report", *sys.argv[1:]]))
