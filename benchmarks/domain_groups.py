"""What ``domain.method: clusters`` finds on the quick start: its groups against the demo's own domains.

    .venv/bin/samplemix demo-data
    .venv/bin/samplemix run --config conf/local.yaml --set domain.method=clusters \\
        --set tables.warehouse=warehouse_clusters
    .venv/bin/python benchmarks/domain_groups.py --warehouse warehouse_clusters

The run ignores the sources' domain field. This script joins ``documents`` and
``holdout`` back to the source files on the text and prints, for each table,
the documents of every group by source domain, and the purity: the share of
documents whose source domain is their group's most common one.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable


def source_domains(pattern: str) -> pd.DataFrame:
    rows = [json.loads(line) for path in sorted(glob.glob(pattern)) for line in Path(path).read_text().splitlines()]
    return pd.DataFrame(rows)[["text", "domain"]].drop_duplicates("text").rename(columns={"domain": "source"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, default=Path("warehouse_clusters"))
    parser.add_argument("--sources", default="data/demo/*.jsonl")
    args = parser.parse_args()
    sources = source_domains(args.sources)
    for table in ("documents", "holdout"):
        labelled = DeltaTable(str(args.warehouse / table)).to_pandas().merge(sources, on="text", how="left")
        counts = pd.crosstab(labelled["domain"], labelled["source"].fillna("(not in the sources)"))
        print(f"{table}: {len(labelled)} documents")
        print(counts.to_string())
        print(json.dumps({"table": table, "documents": len(labelled),
                          "purity": round(float(counts.max(axis=1).sum() / len(labelled)), 4)}))


if __name__ == "__main__":
    main()
