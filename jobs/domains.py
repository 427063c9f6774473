"""spark-submit entry point for the domains stage: `spark-submit jobs/domains.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["domains", *sys.argv[1:]])
