"""End to end: `samplemix run` at two corpus sizes, time per stage and how it grows.

    .venv/bin/python benchmarks/bench_end_to_end.py --corpus generated --sizes 20000 100000
    .venv/bin/python benchmarks/bench_end_to_end.py --corpus bbc --sizes 500 2000

``generated``: the generated corpus with precomputed scores (conf/synthetic.yaml,
column methods). ``bbc``: real BBC News articles with the quick start's methods
(conf/local.yaml: heuristic quality, k-means diversity), all-MiniLM-L6-v2 at 128 tokens. Each size runs
as its own `samplemix run` process; the stage times are read from its log. The
result line gives per-stage seconds at both sizes and the growth exponent
log(t2/t1) / log(n2/n1) (1.0 = linear).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from samplemix_spark.demo.synthetic import write_corpus  # noqa: E402
from tests.conftest import write_jsonl  # noqa: E402
from tests.realtext import bbc_articles  # noqa: E402

STAGE_LINE = re.compile(r"stage (\S+): .* in ([0-9.]+) s")


CONFIGS = {"generated": "synthetic.yaml", "bbc": "local.yaml"}


def prepare(corpus: str, n: int, folder: Path) -> list[str]:
    """Write the corpus; return the --set overrides that point the run at it."""
    if corpus == "generated":
        write_corpus(folder / "data", n)
        return []
    articles = bbc_articles(2225)
    records = [{"text": f"{articles[i % len(articles)]}\n({i})", "domain": "news"} for i in range(n)]
    write_jsonl(folder / "data" / "bbc.jsonl", records)
    return ["diversity.max_tokens=128"]


def run(corpus: str, n: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench_e2e_{n}_"))
    overrides = prepare(corpus, n, folder) + [f"ingest.sources=[{folder}/data/*.jsonl]",
                                              f"tables.warehouse={folder}/wh"]
    command = [sys.executable, "-m", "samplemix_spark.cli", "run", "--config", str(REPO / "conf" / CONFIGS[corpus]),
               *[f"--set={o}" for o in overrides]]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=folder,
                            env={**os.environ, "RUST_LOG": "error"})
    total = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    stages = {m.group(1): float(m.group(2)) for m in STAGE_LINE.finditer(result.stderr)}
    return {**stages, "process_total": round(total, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", choices=["generated", "bbc"], default="generated")
    parser.add_argument("--sizes", type=int, nargs=2, default=[20000, 100000])
    args = parser.parse_args()
    (n1, n2) = args.sizes
    first, second = run(args.corpus, n1), run(args.corpus, n2)
    growth = {stage: round(math.log(max(second[stage], 0.05) / max(first[stage], 0.05)) / math.log(n2 / n1), 2)
              for stage in first if stage in second}
    print(json.dumps({"bench": "end_to_end", "corpus": args.corpus, "sizes": [n1, n2], "seconds": {
        str(n1): first, str(n2): second}, "growth_exponent": growth, "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
