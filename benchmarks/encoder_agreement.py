"""Which encoder the quick start can afford: speed and agreement with MiniLM fp32 on the demo corpus.

    .venv/bin/samplemix demo-data
    .venv/bin/python benchmarks/encoder_agreement.py --out out/encoders

Runs ``samplemix run --config conf/local.yaml`` once per encoder, each in its own
warehouse under ``--out`` (a finished run is reused: ``samplemix run`` skips stages
that are up to date), with ``--set`` overrides only:

  - ``minilm_fp32``: the shipped MiniLM, exact fp32 (the reference);
  - ``minilm_int8``: the same model with row-wise int8 linear layers;
  - ``static``: a model2vec static model distilled from the same MiniLM folder.

For each one prints the embed stage's docs/s and the pipeline's seconds, read
from ``stage_runs``; and against the reference the Spearman correlation of d(x)
over every document, the NMI between the two cluster assignments, and each
domain's output token share (percentage points) and its difference. The
distillation happens once per source model, outside the stage times; the static
run's log gives its seconds (``static encoder: distilled ... in N s``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "minilm_fp32": [],
    "minilm_int8": ["diversity.precision=int8"],
    "static": ["diversity.encoder=static"],
}
REFERENCE = "minilm_fp32"


def run_variant(name: str, out: Path, data: Path, extra: list[str]) -> float:
    """Run (or resume) the quick start for one encoder; returns the wall seconds of the command."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "data").exists():
        (folder / "data").symlink_to(data.resolve())
    sets = [f"--set={o}" for o in extra]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "samplemix_spark.cli", "run", "--config", str(REPO / "conf" / "local.yaml"),
                    *sets], cwd=folder, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return time.perf_counter() - started


def table(out: Path, name: str, table_name: str) -> pd.DataFrame:
    return DeltaTable(str(out / name / "warehouse" / table_name)).to_pandas()


def stage_seconds(out: Path, name: str) -> pd.Series:
    runs = table(out, name, "stage_runs")
    return runs.set_index("stage")["seconds"]


def agreement(out: Path, name: str) -> dict:
    """Spearman of d(x), NMI of the cluster assignments, and the largest domain share difference vs the reference."""
    from scipy.stats import spearmanr
    from sklearn.metrics import normalized_mutual_info_score

    ours, ref = (table(out, n, "diversity").set_index("doc_id").sort_index() for n in (name, REFERENCE))
    assert ours.index.equals(ref.index), "the two runs embedded different documents"
    shares = pd.DataFrame({n: table(out, n, "report_domains").set_index("domain")["output_token_share"] * 100
                           for n in (REFERENCE, name)})
    shares["difference"] = shares[name] - shares[REFERENCE]
    return {"spearman_d": float(spearmanr(ours["diversity"], ref["diversity"]).statistic),
            "nmi": float(normalized_mutual_info_score(ref["cluster_id"], ours["cluster_id"])),
            "max_share_points": float(shares["difference"].abs().max()), "shares": shares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/encoders", help="one warehouse per encoder under this folder")
    parser.add_argument("--data", default="data", help="folder holding demo/ (samplemix demo-data)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    out, data = Path(args.out), Path(args.data)
    names = [REFERENCE, *[n for n in args.variants if n != REFERENCE]]
    for name in names:
        run_variant(name, out, data, VARIANTS[name])

    print(f"\n{'encoder':<12} {'embed s':>8} {'docs/s':>8} {'pipeline s':>11} {'spearman d':>11} {'NMI':>6} "
          f"{'max share diff (points)':>24}")
    for name in names:
        seconds = stage_seconds(out, name)
        docs = len(table(out, name, "embeddings"))
        line = f"{name:<12} {seconds['embed']:>8.1f} {docs / seconds['embed']:>8.0f} {seconds.sum():>11.1f}"
        if name != REFERENCE:
            found = agreement(out, name)
            line += f" {found['spearman_d']:>11.3f} {found['nmi']:>6.3f} {found['max_share_points']:>24.2f}"
        print(line)
    for name in names[1:]:
        print(f"\noutput token share by domain (%), {name} against {REFERENCE}:")
        print(agreement(out, name)["shares"].round(2).to_string())
    provenance = sorted((out / "static" / "encoders").glob("static-*/samplemix_static.json"))
    if provenance:
        print(f"\nstatic model: {provenance[0].parent}")


if __name__ == "__main__":
    main()
