"""benchmarks/gpu_suite.py: the dry run measures every part and writes both reports; a part that hangs or
crashes costs only itself, and what was measured before it stays on disk."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", REPO / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_measures_every_part_and_writes_both_reports(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--dry-run", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    parts = report["parts"]
    assert list(parts) == ["environment", "encoder", "classifier", "proxy", "kmeans", "spark_embed"]
    assert all(p["status"] == "ok" for p in parts.values()), parts
    assert parts["environment"]["torch"] and parts["environment"]["gpu"] is None
    assert [r["max_tokens"] for r in parts["encoder"]["rows"]] == [16, 32]
    assert all(r["loop_docs_per_s"] > 0 and r["bare_docs_per_s"] > 0 for r in parts["encoder"]["rows"])
    assert abs(parts["classifier"]["tokens_per_s"] - parts["classifier"]["docs_per_s"] * 32) <= 2
    assert parts["proxy"]["steps"] == 3 and parts["proxy"]["bytes_per_s"] > 0
    assert parts["proxy"]["mfu"] is None  # no GPU, no peak to compare with
    assert parts["kmeans"]["torch"]["label"].startswith("torch")
    assert parts["spark_embed"]["docs"] == 16
    table = (tmp_path / "gpu_suite.md").read_text()
    assert all(f"| {name} | ok |" in table for name in list(parts)[1:])


def test_a_hung_or_crashed_part_costs_only_itself_and_earlier_results_stay(tmp_path, monkeypatch):
    suite = _suite()
    monkeypatch.delitem(sys.modules, "gpu_suite")
    monkeypatch.setattr(suite, "PARTS", {"quick": lambda sizes, work: {"value": 7},
                                         "hangs": lambda sizes, work: time.sleep(60),
                                         "crashes": lambda sizes, work: os._exit(3),
                                         "raises": lambda sizes, work: 1 / 0})
    started = time.perf_counter()
    code = suite.main(["--dry-run", "--out", str(tmp_path), "--part-limit-s", "2",
                       "--parts", "quick", "hangs", "crashes", "raises"])
    assert code == 1 and time.perf_counter() - started < 30
    parts = json.loads((tmp_path / "gpu_suite.json").read_text())["parts"]
    assert parts["quick"]["status"] == "ok" and parts["quick"]["value"] == 7
    assert parts["hangs"]["status"] == "timeout" and parts["hangs"]["seconds"] >= 2
    assert parts["crashes"] == {"status": "failed", "error": "the part's process ended with code 3",
                                "seconds": parts["crashes"]["seconds"]}
    assert parts["raises"]["status"] == "failed" and parts["raises"]["error"].startswith("ZeroDivisionError")
