"""Encoder throughput on one accelerator: the executor-side ``TextEncoder`` loop, no Spark.

    python3 benchmarks/bench_encoder_device.py --model .gpu/model --texts .gpu/texts.jsonl

Runs where only torch and transformers are installed (a GPU host without Spark
or faiss): the model folder and a JSONL of texts are passed in. For each
max_tokens and batch size it embeds every text once after a warm-up and
prints docs/s, with the device name, precision and the torch version. The
per-task GPU figure a Spark executor gets is this loop's rate; the UDF overhead
on top of it is measured on the CPU by bench_embed_udf.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from samplemix_spark.models.encoder import TextEncoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--texts", required=True)
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in Path(args.texts).read_text().splitlines()]
    for max_tokens in args.max_tokens:
        encoder = TextEncoder(Path(args.model), "auto", max_tokens, "auto", args.precision)
        for batch_size in args.batch_sizes:
            encoder.embed(texts[: 4 * batch_size], batch_size)  # warm-up: kernels, allocator
            if encoder.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            encoder.embed(texts, batch_size, normalize=True)
            if encoder.device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            print(json.dumps({"bench": "encoder_device", "device": torch.cuda.get_device_name(0)
                              if encoder.device.type == "cuda" else "cpu", "torch": torch.__version__,
                              "precision": args.precision, "max_tokens": max_tokens, "batch_size": batch_size,
                              "docs": len(texts), "seconds": round(seconds, 3),
                              "docs_per_s": round(len(texts) / seconds, 1), "date": time.strftime("%Y-%m-%d")}),
                  flush=True)


if __name__ == "__main__":
    main()
