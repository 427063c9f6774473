"""spark-submit entry point for the ingest stage: `spark-submit jobs/ingest.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["ingest", *sys.argv[1:]]))
