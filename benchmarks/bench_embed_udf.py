"""Embedding throughput: the Spark embedding UDF vs a bare torch batch loop, same encoder and batch size.

    .venv/bin/python benchmarks/bench_embed_udf.py --docs 1000 --max-tokens 128 --batch-size 32
    .venv/bin/python benchmarks/bench_embed_udf.py --engine jvm-local --docs 1000

The encoder is the offline all-MiniLM-L6-v2 (mean pooling, L2 normalisation).
The Spark side is the whole embed stage (read documents, UDF, write the
embeddings table); the loop embeds the same texts in input order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from _common import print_result, real_texts, session_with_documents, timed, udf_bench_arguments
from samplemix_spark.diversity.embed import EmbedStep, load_encoder


def bare_torch_loop(encoder, texts: list[str], batch_size: int) -> None:
    """tokenize -> encoder -> mean pool -> normalise, batches in input order."""
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            vectors = encoder.forward(encoder.tokenize(texts[start:start + batch_size]))
            torch.nn.functional.normalize(vectors, dim=-1).cpu().numpy()


def main() -> None:
    parser = udf_bench_arguments("embedding UDF vs a bare torch loop")
    parser.add_argument("--storage", default="float32", choices=["float32", "float16"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_embed_"))
    texts = real_texts(args.docs)
    settings = {"diversity": {"method": "kmeans", "max_tokens": args.max_tokens, "batch_size": args.batch_size,
                              "storage": args.storage}}
    cfg, spark, store = session_with_documents(settings, args.engine, texts, args.partitions, work)

    encoder = load_encoder(cfg.diversity)
    bare_torch_loop(encoder, texts[:args.batch_size], args.batch_size)  # warm-up
    torch_seconds = timed(lambda: bare_torch_loop(encoder, texts, args.batch_size))
    EmbedStep(cfg).run(spark, store)  # warm-up: loads the encoder where the engine runs UDFs
    spark_seconds = timed(lambda: EmbedStep(cfg).run(spark, store))
    print_result("embed_udf", len(texts), spark_seconds, torch_seconds, engine=args.engine,
                 max_tokens=args.max_tokens, batch_size=args.batch_size, partitions=args.partitions,
                 storage=args.storage)
    spark.stop()


if __name__ == "__main__":
    main()
