"""CPU encoder speed and fidelity on the demo corpus: fp32 vs row-wise int8, against plain loops.

    .venv/bin/samplemix demo-data        # data/demo/*.jsonl, the quick start's corpus
    .venv/bin/python benchmarks/bench_cpu_encoder.py --max-tokens 64 --batch-size 64

Embeds every demo document (no Spark) with:
  - ``bare_fp32``: a plain transformers loop (tokenize a batch padded to its longest text,
    forward, mean-pool, normalise), in input order;
  - ``sentence_transformers``: ``SentenceTransformer.encode`` on the same model folder;
  - ``encoder_fp32`` / ``encoder_int8``: the executor-side ``TextEncoder`` with
    ``diversity.precision`` fp32 (exact) and int8 (models/int8.py).
Prints seconds and docs/s for each, then the int8 fidelity bounds the quick start keeps:
the per-document cosine to fp32 (minimum, share >= 0.99) and the share of documents whose
nearest fp32 k-means centroid (k = sqrt(N), 20 iterations, as the quick start) is unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from samplemix_spark.config import DEFAULT_ENCODER  # noqa: E402
from samplemix_spark.models.encoder import TextEncoder  # noqa: E402
from samplemix_spark.models.paths import resolve_local_path  # noqa: E402


def demo_texts(folder: Path, limit: int) -> list[str]:
    texts = [json.loads(line)["text"] for path in sorted(folder.glob("*.jsonl"))
             for line in path.read_text().splitlines() if line.strip()]
    return texts[:limit] if limit else texts


def bare_fp32(model_dir: Path, texts: list[str], max_tokens: int, batch_size: int) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=max_tokens, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
    return np.concatenate(out)


def sentence_transformers(model_dir: Path, texts: list[str], max_tokens: int, batch_size: int) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = max_tokens
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)


def encoder(precision: str):
    def embed(model_dir: Path, texts: list[str], max_tokens: int, batch_size: int) -> np.ndarray:
        return TextEncoder(model_dir, "auto", max_tokens, "cpu", precision).embed(texts, batch_size, normalize=True)
    return embed


VARIANTS = {"bare_fp32": bare_fp32, "sentence_transformers": sentence_transformers,
            "encoder_fp32": encoder("fp32"), "encoder_int8": encoder("int8")}


def same_centroid_share(exact: np.ndarray, approximate: np.ndarray, seed: int = 1024) -> float:
    import faiss

    k = max(1, round(len(exact) ** 0.5))
    kmeans = faiss.Kmeans(exact.shape[1], k, niter=20, seed=seed, spherical=True)
    kmeans.train(exact)
    index = faiss.IndexFlatIP(exact.shape[1])
    index.add(kmeans.centroids)
    return float(np.mean(index.search(exact, 1)[1] == index.search(approximate, 1)[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("data/demo"))
    parser.add_argument("--docs", type=int, default=0, help="first N documents (default: all)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    texts = demo_texts(args.demo, args.docs)
    model_dir = resolve_local_path(DEFAULT_ENCODER, "diversity.encoder")
    vectors = {}
    for name in args.variants:
        started = time.perf_counter()
        vectors[name] = VARIANTS[name](model_dir, texts, args.max_tokens, args.batch_size)
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "cpu_encoder", "variant": name, "docs": len(texts), "max_tokens": args.max_tokens,
                          "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                          "seconds": round(seconds, 2), "docs_per_s": round(len(texts) / seconds, 1),
                          "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}), flush=True)
    if {"encoder_fp32", "encoder_int8"} <= set(vectors):
        exact, quantized = vectors["encoder_fp32"], vectors["encoder_int8"]
        cosine = np.sum(exact * quantized, axis=1)
        print(json.dumps({"bench": "cpu_encoder_fidelity", "docs": len(texts),
                          "min_cosine": round(float(cosine.min()), 5),
                          "share_cosine_ge_0.99": round(float(np.mean(cosine >= 0.99)), 5),
                          "same_centroid_share": round(same_centroid_share(exact, quantized), 5)}), flush=True)


if __name__ == "__main__":
    main()
