"""Every GPU measurement in one command of at most five minutes, for the moment a GPU machine is lent.

    python benchmarks/gpu_suite.py --out out/gpu_suite            # on the GPU host
    python benchmarks/gpu_suite.py --dry-run --out /tmp/gpu_suite  # the harness at tiny sizes, on CPU

No installs and no downloads: it uses the torch, transformers and CUDA already on
the host. Models are built from their configs with random weights (throughput
does not depend on the weights), and the tokenizer is a WordPiece vocabulary
generated here, so nothing but this repository travels. Parts, each in its own
forked process with its own time limit, so a hang or a crash costs that part only:

- ``environment``: GPU name, driver, torch, CUDA, transformers, faiss and Spark presence;
- ``encoder``: the executor-side ``TextEncoder.embed`` loop that the embed and
  quality-scoring UDFs run (MiniLM shape), docs/s at 64, 128 and 512 tokens, against
  a bare loop of forward passes over pre-tokenised full-length batches;
- ``classifier``: a BERT-base-shaped sequence classifier at 512 tokens through
  ``models.classifier`` (the ``quality.method: classifier`` UDF's loop), tokens/s;
- ``proxy``: the proxy trainer's ``gpu`` preset for a fixed number of steps,
  bytes/s and model FLOPs utilisation (reported against the 40% goal, not gated);
- ``kmeans``: 1M x 384 vectors, k = 1,000, 20 iterations: faiss-gpu when importable,
  else a torch k-means labelled as such, and faiss-cpu on a subsample where present;
- ``spark_embed``: the embed UDF through the embedded engine, only where pyspark
  and pysail import.

``gpu_suite.json`` and ``gpu_suite.md`` under ``--out`` are rewritten after every
part, so a failure or a timeout keeps what was measured before it. The dry run
exercises the harness, the process limits and the report on CPU; it cannot
cover CUDA kernels, bf16 numerics, or GPU memory limits.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

MFU_GOAL = 0.40
CLASSIFIER_LOOP = "models.classifier.TextClassifier (the classifier quality UDF's loop)"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each part runs: ``FULL`` on the GPU host, ``DRY`` on CPU in seconds."""

    part_limit_s: int
    encoder_shape: dict
    encoder_tokens: tuple
    encoder_docs: int
    encoder_batch: int
    classifier_shape: dict
    classifier_tokens: int
    classifier_docs: int
    classifier_batch: int
    proxy_preset: str
    proxy_steps: int
    kmeans_n: int
    kmeans_dim: int
    kmeans_k: int
    kmeans_iters: int
    kmeans_cpu_n: int
    spark_docs: int


MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}

FULL = Sizes(part_limit_s=40, encoder_shape=MINILM, encoder_tokens=(64, 128, 512), encoder_docs=8192,
             encoder_batch=256, classifier_shape=BERT_BASE, classifier_tokens=512, classifier_docs=2048,
             classifier_batch=64, proxy_preset="gpu", proxy_steps=100, kmeans_n=1_000_000, kmeans_dim=384,
             kmeans_k=1000, kmeans_iters=20, kmeans_cpu_n=100_000, spark_docs=4096)
DRY = Sizes(part_limit_s=60, encoder_shape=TINY, encoder_tokens=(16, 32), encoder_docs=24, encoder_batch=8,
            classifier_shape=TINY, classifier_tokens=32, classifier_docs=16, classifier_batch=8,
            proxy_preset="test", proxy_steps=3, kmeans_n=2000, kmeans_dim=16, kmeans_k=8, kmeans_iters=3,
            kmeans_cpu_n=1000, spark_docs=16)

VOCAB_SIZE = 30522  # BERT's, so the embedding tables have their real shape


# ---------------------------------------------------------------- inputs built here, nothing downloaded

def words(n: int) -> list[str]:
    """``n`` distinct lowercase pseudo-words, each one WordPiece token of the generated vocabulary."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    rng = np.random.default_rng(0)
    found: dict[str, None] = {}
    while len(found) < n:
        for row in rng.integers(0, 26, (n, 7)):
            found.setdefault("".join(letters[row]), None)
    return list(found)[:n]


def texts(n_docs: int, n_words: int) -> list[str]:
    """``n_docs`` texts of ``n_words`` vocabulary words each: every text fills the longest window measured."""
    vocabulary = words(2000)
    rng = np.random.default_rng(1)
    return [" ".join(vocabulary[i] for i in rng.integers(0, len(vocabulary), n_words)) for _ in range(n_docs)]


def model_folder(root: Path, shape: dict, classifier: bool) -> Path:
    """A BERT-shaped model with random weights and a WordPiece tokenizer, saved where ``TextEncoder`` reads."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, BertModel, BertTokenizerFast
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    folder = root / ("classifier" if classifier else "encoder")
    folder.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "vocab.txt").write_text("\n".join(special + words(VOCAB_SIZE - len(special))) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    config = BertConfig(vocab_size=VOCAB_SIZE, max_position_embeddings=512, num_labels=1, **shape)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config) if classifier else BertModel(config)
    model.save_pretrained(str(folder))
    return folder


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(call) -> float:
    """Seconds ``call()`` takes, queued GPU work included."""
    synchronize()
    started = time.perf_counter()
    call()
    synchronize()
    return time.perf_counter() - started


# ---------------------------------------------------------------- parts (each runs in a forked child)

def part_environment(sizes: Sizes, work: Path) -> dict:
    import torch
    import transformers

    found = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
             "python": platform.python_version(), "cpu_count": os.cpu_count(),
             "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
             "faiss": importable("faiss"), "pyspark": importable("pyspark"), "pysail": importable("pysail")}
    try:
        found["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         check=False, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        found["driver"] = None
    return found


def part_encoder(sizes: Sizes, work: Path) -> dict:
    """The embed/score UDF's loop (tokenise, length buckets, forward, pool) against bare forward passes."""
    folder = model_folder(work, sizes.encoder_shape, classifier=False)
    corpus = texts(sizes.encoder_docs, max(sizes.encoder_tokens))
    rows = [encoder_row(folder, corpus, max_tokens, sizes.encoder_batch) for max_tokens in sizes.encoder_tokens]
    return {"shape": sizes.encoder_shape, "rows": rows}


def encoder_row(folder: Path, corpus: list[str], max_tokens: int, batch_size: int) -> dict:
    import torch

    from samplemix_spark.models.encoder import TextEncoder, autocast

    encoder = TextEncoder(folder, "mean", max_tokens, "auto", "auto")
    encoder.embed(corpus[:batch_size], batch_size)  # warm-up: kernels, allocator
    loop_s = timed(lambda: encoder.embed(corpus, batch_size, normalize=True))
    ids = torch.randint(5, VOCAB_SIZE, (batch_size, max_tokens), device=encoder.device)
    batches = -(-len(corpus) // batch_size)

    @torch.inference_mode()
    def bare() -> None:
        for _ in range(batches):
            with autocast(encoder.device, encoder.precision):
                encoder.model(input_ids=ids, attention_mask=torch.ones_like(ids))

    loop_rate, bare_rate = len(corpus) / loop_s, batches * batch_size / timed(bare)
    return {"max_tokens": max_tokens, "batch_size": batch_size, "docs": len(corpus), "precision": encoder.precision,
            "device": str(encoder.device), "loop_docs_per_s": round(loop_rate, 1),
            "bare_docs_per_s": round(bare_rate, 1), "bare_over_loop": round(bare_rate / loop_rate, 2)}


def part_classifier(sizes: Sizes, work: Path) -> dict:
    """The classifier quality UDF's loop (``models.classifier``), BERT-base shape, full-length texts."""
    from samplemix_spark.models.classifier import ClassifierSpec, TextClassifier

    folder = model_folder(work, sizes.classifier_shape, classifier=True)
    classifier = TextClassifier(folder, ClassifierSpec("regression", (0.0, 5.0)), sizes.classifier_tokens)
    corpus = texts(sizes.classifier_docs, sizes.classifier_tokens)
    classifier.score(corpus[:sizes.classifier_batch], sizes.classifier_batch)  # warm-up
    seconds = timed(lambda: classifier.score(corpus, sizes.classifier_batch))
    return {"loop": CLASSIFIER_LOOP, "shape": sizes.classifier_shape, "precision": classifier.encoder.precision,
            "device": str(classifier.encoder.device), "max_tokens": sizes.classifier_tokens, "docs": len(corpus),
            "docs_per_s": round(len(corpus) / seconds, 1),
            "tokens_per_s": round(len(corpus) * sizes.classifier_tokens / seconds)}


def part_proxy(sizes: Sizes, work: Path) -> dict:
    from samplemix_spark.evaluation.proxy import PRESETS, train

    preset = PRESETS[sizes.proxy_preset]

    def run(steps: int):
        data = np.random.default_rng(0).integers(0, 256, steps * preset.batch_size * preset.context + 1,
                                                 dtype=np.uint8)
        quick = dataclasses.replace(preset, budget_bytes=len(data) - 1, evaluations=1)
        return train(data, {}, quick, seed=0, threads=os.cpu_count() or 1)

    run(2)  # warm-up: allocation, kernel selection
    result = run(sizes.proxy_steps)
    return {"preset": preset.name, "parameters": result.n_params, "steps": result.steps,
            "train_seconds": round(result.seconds, 2), "bytes_per_s": round(result.bytes_per_s),
            "mfu": None if result.mfu is None else round(result.mfu, 4), "mfu_goal": MFU_GOAL}


def torch_kmeans(vectors, k: int, iters: int):
    """Spherical Lloyd iterations in torch (cosine assignment, renormalised means): the fallback measured
    where faiss-gpu is not installed. Its cost per iteration is faiss's: one n x k x d product."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(0)
    centroids = vectors[torch.randperm(len(vectors), generator=generator)[:k].to(vectors.device)].clone()
    for _ in range(iters):
        assignment = torch.cat([(chunk @ centroids.T).argmax(1) for chunk in vectors.split(65536)])
        sums = torch.zeros_like(centroids).index_add_(0, assignment, vectors)
        centroids = torch.nn.functional.normalize(sums + 1e-12, dim=1)
    return centroids


def part_kmeans(sizes: Sizes, work: Path) -> dict:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((sizes.kmeans_n, sizes.kmeans_dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    shape = {"n": sizes.kmeans_n, "dim": sizes.kmeans_dim, "k": sizes.kmeans_k, "iterations": sizes.kmeans_iters}
    found = {"shape": shape}
    if importable("faiss"):
        import faiss

        from samplemix_spark.models.kmeans import train_kmeans

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        subset = vectors if gpus else vectors[:sizes.kmeans_cpu_n]
        seconds = timed(lambda: train_kmeans(subset, sizes.kmeans_k, sizes.kmeans_iters, seed=1024))
        found["faiss"] = {"gpu": gpus > 0, "n": len(subset), "seconds": round(seconds, 3),
                          "s_per_iteration_per_1m": round(seconds / sizes.kmeans_iters * 1e6 / len(subset), 4)}
    on_device = torch.from_numpy(vectors).to(device)
    torch_kmeans(on_device[:sizes.kmeans_k * 4], sizes.kmeans_k, 1)  # warm-up
    seconds = timed(lambda: torch_kmeans(on_device, sizes.kmeans_k, sizes.kmeans_iters))
    found["torch"] = {"label": "torch k-means (not faiss)", "device": str(device), "n": sizes.kmeans_n,
                      "seconds": round(seconds, 3),
                      "s_per_iteration_per_1m": round(seconds / sizes.kmeans_iters * 1e6 / sizes.kmeans_n, 4)}
    return found


def part_spark_embed(sizes: Sizes, work: Path) -> dict:
    if not (importable("pyspark") and importable("pysail")):
        return {"skipped": "pyspark or pysail is not installed here"}
    from pyspark.sql import functions as F

    from samplemix_spark.config import DiversityConfig, EngineConfig
    from samplemix_spark.diversity.embed import embedding_column
    from samplemix_spark.engine.session import build_session

    folder = model_folder(work, sizes.encoder_shape, classifier=False)
    cfg = DiversityConfig(encoder=str(folder), pooling="mean", max_tokens=128, batch_size=sizes.encoder_batch)
    spark = build_session(EngineConfig())
    frame = spark.createDataFrame([(t,) for t in texts(sizes.spark_docs, 128)], "text string")
    vectors = frame.select(embedding_column(F.col("text"), cfg).alias("v"))
    vectors.limit(1).collect()  # warm-up: the executor loads the encoder
    started = time.perf_counter()
    n = vectors.agg(F.count(F.size("v"))).collect()[0][0]
    seconds = time.perf_counter() - started
    return {"engine": "embedded (pysail)", "max_tokens": 128, "docs": n, "docs_per_s": round(n / seconds, 1)}


PARTS = {"environment": part_environment, "encoder": part_encoder, "classifier": part_classifier,
         "proxy": part_proxy, "kmeans": part_kmeans, "spark_embed": part_spark_embed}


def importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------- harness (the parent process)

def _child(name: str, sizes: Sizes, work: str, pipe) -> None:
    try:
        pipe.send({"status": "ok", **PARTS[name](sizes, Path(work))})
    except Exception as error:  # noqa: BLE001  (any failure is this part's result, recorded by the parent)
        pipe.send({"status": "failed", "error": f"{type(error).__name__}: {error}",
                   "traceback": traceback.format_exc()[-2000:]})


def run_part(name: str, sizes: Sizes, limit_s: float) -> dict:
    """One part in a forked process: its result, or ``timeout`` / ``failed`` with what is known."""
    context = multiprocessing.get_context("fork")  # the parent never touches CUDA, so forking is safe
    receive, send = context.Pipe(duplex=False)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"gpu_suite_{name}_") as work:
        process = context.Process(target=_child, args=(name, sizes, work, send), daemon=True)
        process.start()
        send.close()  # so a child that dies without a result ends the wait at once (EOF)
        try:
            result = receive.recv() if receive.poll(limit_s) else None
        except EOFError:
            result = None
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    seconds = round(time.perf_counter() - started, 1)
    if result is None and seconds >= limit_s:
        result = {"status": "timeout", "error": f"no result within {limit_s:.0f} s"}
    elif result is None:
        result = {"status": "failed", "error": f"the part's process ended with code {process.exitcode}"}
    return {**result, "seconds": seconds}


def markdown(report: dict) -> str:
    """The report as the tables docs/benchmarks.md quotes."""
    lines = [f"# GPU suite ({report['mode']}, {report['date']})", ""]
    env = report["parts"].get("environment", {})
    if env.get("status") == "ok":
        lines += [(f"GPU {env['gpu']}, driver {env['driver']}, torch {env['torch']}, CUDA {env['cuda']}, "
                   f"transformers {env['transformers']}, faiss {env['faiss']}, pyspark {env['pyspark']}."), ""]
    lines += ["| part | status | seconds | result |", "|---|---|---:|---|"]
    for name, part in report["parts"].items():
        if name == "environment":
            continue
        shown = {k: v for k, v in part.items() if k not in ("status", "seconds", "traceback")}
        lines.append(f"| {name} | {part['status']} | {part['seconds']} | `{json.dumps(shown)}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_suite.json and gpu_suite.md")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU: checks the harness only")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--part-limit-s", type=float, help="seconds each part may take (default 40, dry run 60)")
    args = parser.parse_args(argv)
    sizes = DRY if args.dry_run else FULL
    limit = args.part_limit_s or sizes.part_limit_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"mode": "dry run (CPU, tiny sizes)" if args.dry_run else "full", "date": time.strftime("%Y-%m-%d"),
              "part_limit_s": limit, "parts": {}}
    for name in args.parts:
        print(f"gpu_suite: {name} (limit {limit:.0f} s)", flush=True)
        report["parts"][name] = run_part(name, sizes, limit)
        print(f"gpu_suite: {name}: {report['parts'][name]['status']} in {report['parts'][name]['seconds']} s",
              flush=True)
        (out / "gpu_suite.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "gpu_suite.md").write_text(markdown(report))
    return 0 if all(p["status"] == "ok" for p in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
