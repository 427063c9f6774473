"""What a daily refresh costs against the full run it refreshes: seconds, and bytes written per table.

    .venv/bin/python benchmarks/refresh_cost.py                       # 200,000 documents, + 1%
    .venv/bin/python benchmarks/refresh_cost.py --docs 20000 --json out/refresh_cost.json

A generated corpus (``scale_sim.write_corpus``: hashed ids, 12 domains of skewed
sizes) goes through ``samplemix run`` with the quick start's config
(``conf/local.yaml``: the embedded engine, Delta, heuristic quality, MiniLM,
k-means) and a 5% held-out split. Then new documents (``--new-share`` of the
corpus, 1% by default) land in a new file and ``samplemix run --incremental``
refreshes the warehouse. Bytes are the sizes of the data files each commit adds,
read from the tables' Delta logs: the full run's are every table's files at its
end; the refresh's are the files its commits add. Targets (issue: a refresh that
costs the new data): the refresh takes at most 10% of the full run's seconds and
writes at most 5% of its bytes over every table but ``output``, which a refresh
changes by one MERGE of the copies whose count changed (its rows and files are reported).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from samplemix_spark.config import load_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.pipeline import execute, plan  # noqa: E402
from samplemix_spark.refresh import run_incremental  # noqa: E402
from scale_sim import write_corpus  # noqa: E402

TIME_SHARE, BYTES_SHARE = 0.10, 0.05


def log_actions(table: Path) -> dict[int, list[dict]]:
    """The actions of each commit of a Delta table, by version."""
    return {int(entry.stem): [json.loads(line) for line in entry.read_text().splitlines() if line.strip()]
            for entry in sorted((table / "_delta_log").glob("*.json"))}


def commits(table: Path) -> dict[int, int]:
    """Bytes of the data files each commit of a Delta table adds, by version."""
    return {version: sum(a["add"]["size"] for a in actions if "add" in a)
            for version, actions in log_actions(table).items()}


def live_bytes(table: Path) -> int:
    """Bytes of the data files the table's current version reads."""
    from deltalake import DeltaTable

    return sum(Path(uri.removeprefix("file://")).stat().st_size for uri in DeltaTable(str(table)).file_uris())


def tables(warehouse: Path) -> list[Path]:
    return sorted(path for path in warehouse.iterdir() if (path / "_delta_log").is_dir())


def measure(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    write_corpus(work / "data", args.docs)
    cfg = load_config(REPO / "conf" / "local.yaml", [
        f"ingest.sources=[{work}/data/*.parquet]", "ingest.format=parquet", "ingest.id_column=id",
        "ingest.holdout_fraction=0.05", f"tables.warehouse={work}/wh", *args.set])
    spark = build_session(cfg.engine)
    started = time.perf_counter()
    execute(spark, cfg, plan(cfg), resume=False)
    full_s = time.perf_counter() - started
    versions = {path.name: max(commits(path)) for path in tables(work / "wh")}
    full_bytes = {path.name: live_bytes(path) for path in tables(work / "wh")}
    n_new = max(1, round(args.docs * args.new_share))
    write_corpus(work / "new", n_new, seed=12)
    (work / "new" / "part-0000.parquet").rename(work / "data" / "new-0000.parquet")
    started = time.perf_counter()
    run_incremental(spark, cfg, planned=plan(cfg))
    refresh_s = time.perf_counter() - started
    spark.stop()
    written = {path.name: sum(size for version, size in commits(path).items()
                              if version > versions.get(path.name, -1)) for path in tables(work / "wh")}
    return {"docs": args.docs, "new_docs": n_new, "full_s": round(full_s, 1), "refresh_s": round(refresh_s, 1),
            "tables": {name: {"full_bytes": full_bytes.get(name, 0), "refresh_bytes": written[name]}
                       for name in sorted(written)},
            "counts": changed_counts(work / "wh" / "weights", versions["weights"]),
            "output_merge": merge_metrics(work / "wh" / "output", versions["output"])}


def changed_counts(weights: Path, before: int) -> dict:
    """How much of ``output`` a refresh changes: documents whose count changed between the full run's weights
    (version ``before``) and the refresh's, and the output rows (copies) added or removed."""
    from deltalake import DeltaTable

    old, new = (DeltaTable(str(weights), version=v).to_pandas(columns=["doc_id", "count"]).set_index("doc_id")["count"]
                for v in (before, None))
    diff = new.sub(old.reindex(new.index).fillna(0))
    return {"documents": int(len(new)), "changed_documents": int((diff != 0).sum()),
            "output_rows": int(new.sum()), "changed_rows": int(diff.abs().sum())}


def merge_metrics(output: Path, before: int) -> dict:
    """Rows and files of the refresh's MERGE into ``output`` (its commit after version ``before``)."""
    for version, actions in log_actions(output).items():
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {}) if version > before else {}
        if info.get("operation") == "MERGE":
            metrics = info["operationMetrics"]
            return {key: int(metrics[key]) for key in ("numTargetRowsInserted", "numTargetRowsDeleted",
                                                       "numTargetRowsCopied", "numTargetFilesRemoved",
                                                       "numTargetFilesAdded", "numTargetBytesAdded")}
    return {}


def report(result: dict) -> str:
    rows = [f"{result['docs']:,} documents, then {result['new_docs']:,} new in a new file",
            f"{'table':<22}{'full run':>14}{'refresh':>14}{'share':>9}"]
    others_full = others_refresh = 0
    for name, sizes in result["tables"].items():
        full, refresh = sizes["full_bytes"], sizes["refresh_bytes"]
        if name != "output":
            others_full, others_refresh = others_full + full, others_refresh + refresh
        share = f"{refresh / full:.1%}" if full else "-"
        rows.append(f"{name:<22}{full:>14,}{refresh:>14,}{share:>9}")
    time_share, bytes_share = result["refresh_s"] / result["full_s"], others_refresh / max(others_full, 1)
    rows.append(f"{'all but output':<22}{others_full:>14,}{others_refresh:>14,}{bytes_share:>9.1%}")
    rows.append(f"seconds: full run {result['full_s']:.1f}, refresh {result['refresh_s']:.1f} ({time_share:.1%}; "
                f"target <= {TIME_SHARE:.0%}: {'met' if time_share <= TIME_SHARE else 'NOT met'})")
    rows.append(f"bytes but output: {bytes_share:.1%} of the full run's (target <= {BYTES_SHARE:.0%}: "
                f"{'met' if bytes_share <= BYTES_SHARE else 'NOT met'})")
    counts = result["counts"]
    rows.append(f"output: {counts['changed_documents']:,} of {counts['documents']:,} documents changed count; "
                f"{counts['changed_rows']:,} copies added or removed of {counts['output_rows']:,} "
                f"({counts['changed_rows'] / max(counts['output_rows'], 1):.1%})")
    merge, full_output = result.get("output_merge") or {}, result["tables"]["output"]["full_bytes"]
    if merge:
        rows.append(f"output MERGE: {merge['numTargetRowsInserted']:,} copies inserted, "
                    f"{merge['numTargetRowsDeleted']:,} deleted, {merge['numTargetRowsCopied']:,} copied with them; "
                    f"{merge['numTargetFilesRemoved']:,} files rewritten as {merge['numTargetFilesAdded']:,}, "
                    f"{merge['numTargetBytesAdded']:,} bytes ({merge['numTargetBytesAdded'] / max(full_output, 1):.1%} "
                    "of the full run's output)")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--new-share", type=float, default=0.01)
    parser.add_argument("--work", default=str(REPO / "out" / "refresh_cost"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = measure(args)
    print(report(result), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
