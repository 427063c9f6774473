"""spark-submit entry point for the ingest stage: `spark-submit jobs/ingest.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["ingest", *sys.argv[1:]])
