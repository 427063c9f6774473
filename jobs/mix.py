"""spark-submit entry point for the mix stage: `spark-submit jobs/mix.py --config conf/...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["mix", *sys.argv[1:]]))
