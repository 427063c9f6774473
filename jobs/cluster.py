"""spark-submit entry point for the cluster stage: `spark-submit jobs/cluster.py --config conf/...`."""
import sys

from samplemix_spark.cli import run

run(["cluster", *sys.argv[1:]])
