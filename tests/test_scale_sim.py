"""``benchmarks/scale_sim.py`` at 20,000 documents on classic Spark with an 8 MiB result cap and 1 GiB of driver
memory: every stage finishes, no document is lost, and the k-means sample reaches the driver in chunks.

The static encoder is distilled from a tiny BERT built from the corpus (as in test_static_encoder.py), so the
run costs the pipeline, not a distillation of MiniLM.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import REPO
from .test_static_encoder import tiny_bert

pytestmark = [pytest.mark.jvm,
              pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")]

N_DOCS = 20_000


def _scale_sim():
    spec = importlib.util.spec_from_file_location("scale_sim", REPO / "benchmarks" / "scale_sim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_sim_finishes_every_stage_under_a_small_driver(tmp_path):
    sim = _scale_sim()
    probe = pd.concat(pd.read_parquet(p) for p in sim.write_corpus(tmp_path / "probe", 2000))
    assert probe["domain"].value_counts(normalize=True).iloc[0] > 0.6 and probe["domain"].nunique() >= 5
    tiny_bert(tmp_path / "bert", probe["text"].tolist())
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "scale_sim.py"), "--sizes", str(N_DOCS), "--no-evaluate",
         "--result-cap", "8m", "--work", str(tmp_path), "--static-path", str(tmp_path / "encoders"),
         "--json", str(tmp_path / "figures.json"), f"--set=diversity.static.source={tmp_path}/bert",
         "--set=diversity.static.pca_dims=32"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    stages = figures["stages"][str(N_DOCS)]
    assert list(stages) == ["ingest", "quality", "embed", "cluster", "assign", "diversity", "mix", "report"]
    assert all(row["seconds"] > 0 and row["tree_mb"] > 0 for row in stages.values())

    warehouse = tmp_path / f"scale_{N_DOCS}" / "wh"
    rows = {t: len(pd.read_parquet(warehouse / t)) for t in ("documents", "holdout", "rejects", "embeddings")}
    assert rows["documents"] + rows["holdout"] + rows["rejects"] == N_DOCS and rows["holdout"] > 0
    assert rows["embeddings"] == rows["documents"]
    assert len(pd.read_parquet(warehouse / "centroids")) == round(math.sqrt(rows["documents"]))
    # 20,000 vectors of 32 floats with their ids are more than a quarter of the 8 MiB cap: two chunks at least.
    assert pd.read_parquet(warehouse / "kmeans_sample")["chunk"].nunique() >= 2
