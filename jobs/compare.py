"""spark-submit entry point for comparing runs: `spark-submit jobs/compare.py RUN_A RUN_B --out ...`."""
import sys

from samplemix_spark.cli import main

sys.exit(main(["compare", *sys.argv[1:]]))
