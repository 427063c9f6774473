"""Evaluator variants on real text: fine-tuned vs frozen shared encoder, ordinal vs classification head.

    .venv/bin/python benchmarks/bench_quality_training.py --good 300 --bad 300 --epochs 2

Labels: real BBC News articles labelled 6-8 and low-quality pages built from other
real articles labelled 0-3 (``tests/realtext.py``). This is an easy proxy task, not
the paper's GPT-4o rubric labels; it shows the job end to end and how the variants
compare on one label set. Prints one JSON line with held-out metrics per variant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplemix_spark.config import QualityTrainConfig  # noqa: E402
from samplemix_spark.quality.train import QualityTrainer  # noqa: E402
from tests.realtext import quality_labels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--good", type=int, default=300)
    parser.add_argument("--bad", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    labels = pd.DataFrame(quality_labels(args.good, args.bad))
    cfg = QualityTrainConfig(mode="finetune", compare=True, epochs=args.epochs, learning_rate=5e-5,
                             max_tokens=args.max_tokens, holdout_fraction=0.2,
                             output=tempfile.mkdtemp(prefix="bench_quality_train_"))
    report = QualityTrainer(cfg).run(labels)
    print(json.dumps({"bench": "quality_training", "labels": len(labels), "n_test": report["n_test"],
                      "baseline": report["baseline_constant"], "date": time.strftime("%Y-%m-%d"),
                      "variants": {f"{v['mode']}/{v['head']}": {**v["metrics"], "seconds": round(v["seconds"], 1)}
                                   for v in report["variants"]}}))


if __name__ == "__main__":
    main()
