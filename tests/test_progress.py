"""Progress lines from inside the per-document UDFs."""

from __future__ import annotations

import logging


from samplemix_spark.engine.progress import Progress
from samplemix_spark.pipeline import run_stage

from .conftest import make_config, write_jsonl


def test_a_line_every_interval_with_share_rate_and_time_left():
    progress = Progress("embed", total=1000, interval=10.0, started=0.0)
    assert progress.add(100, now=5.0) is None
    assert progress.add(300, now=10.0) == "embed: 400 of 1,000 documents (40%), 40 docs/s, about 15 s left"
    assert progress.add(100, now=15.0) is None
    assert progress.add(500, now=20.0) == "embed: 1,000 of 1,000 documents (100%), 50 docs/s, about 0 s left"


def test_a_stage_shorter_than_the_interval_writes_no_line():
    progress = Progress("assign", total=10, interval=100.0, started=0.0)
    assert progress.add(4, now=1.0) is None
    assert progress.add(6, now=2.0) is None


def test_no_lines_when_turned_off_and_worker_lines_without_a_total():
    assert Progress("embed", total=10, interval=0.0).add(10, now=100.0) is None
    worker = Progress("assign", total=100, run_id="1-0", interval=1.0, started=0.0)  # built by another process
    assert worker.add(5, now=0.5) is None
    assert worker.add(5, now=2.0) == "assign: 10 documents in this worker, 5.0 docs/s"


def test_a_stage_that_reads_its_input_again_starts_a_new_count():
    progress = Progress("ingest", total=2, unit="files", interval=1.0, started=0.0)
    assert progress.add(1, now=0.5) is None
    assert progress.add(1, now=2.0) == "ingest: 2 of 2 files (100%), 1.0 files/s, about 0 s left"
    assert progress.add(1, now=10.0) is None  # the second pass over the same files starts its clock here
    assert progress.add(1, now=12.0) == "ingest: 2 of 2 files (100%), 1.0 files/s, about 0 s left"


def test_long_stages_report_progress_on_the_embedded_engine(spark, tmp_path, caplog, monkeypatch,
                                                             quality_checkpoint):
    monkeypatch.setenv("SAMPLEMIX_PROGRESS_S", "0.000001")
    sources = [write_jsonl(tmp_path / f"part{p}.jsonl",
                           [{"text": f"document number {i} says something about topic {i % 7}.", "domain": "d"}
                            for i in range(p * 100, p * 100 + 100)]) for p in range(3)]
    cfg = make_config(tmp_path / "wh", sources, ingest={"quality_column": None, "diversity_column": None},
                      quality={"method": "model", "model_path": str(quality_checkpoint[0])},
                      diversity={"method": "kmeans", "k": 4, "batch_size": 64})
    caplog.set_level(logging.INFO)
    last, n_lines = {}, {}
    for stage in ("ingest", "embed", "cluster", "assign", "quality"):
        caplog.clear()
        run_stage(spark, cfg, stage)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{stage}: ")
                 and " of " in r.getMessage()]
        last[stage] = lines[-1].split(" (")[0] if lines else None
        n_lines[stage] = len(lines)
    del last["cluster"]  # driver-side k-means: its own log lines
    assert last == {"ingest": "ingest: 3 of 3 files", "embed": "embed: 300 of 300 documents",
                    "assign": "assign: 300 of 300 documents", "quality": "quality: 300 of 300 documents"}
    assert n_lines["embed"] >= 300 / 64  # a line per forward pass, not per Arrow batch


def test_heartbeat_names_the_stage_and_pass_and_keeps_quiet_after_a_progress_line(caplog):
    import time

    from samplemix_spark.engine.progress import heartbeat, in_pass

    caplog.set_level(logging.INFO)
    with heartbeat("mix", interval=0.1), in_pass("writing table output"):
        time.sleep(0.45)
    beats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mix: ")]
    assert len(beats) >= 2
    assert all(b.startswith("mix: writing table output, ") and b.endswith(" s in the stage") for b in beats)
    caplog.clear()
    counting = Progress("mix: counting", total=0, interval=0.05, started=time.time() - 1)
    with heartbeat("mix", interval=0.3):
        for _ in range(10):  # a progress line every 0.05 s leaves the heartbeat nothing to say
            time.sleep(0.05)
            counting.add(1)
    said = [r.getMessage() for r in caplog.records]
    assert said and all(m.startswith("mix: counting: ") for m in said)


def test_ingest_reports_during_the_documents_write(spark, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("SAMPLEMIX_PROGRESS_S", "0.2")
    rows = [{"text": f"document {i} has a few sentences. " * 20, "domain": "d", "quality_score": 5,
             "diversity_score": 0.5} for i in range(3000)]
    cfg = make_config(tmp_path / "wh", [write_jsonl(tmp_path / "corpus.jsonl", rows)])
    caplog.set_level(logging.INFO)
    run_stage(spark, cfg, "ingest")
    said = [(r.created, r.getMessage()) for r in caplog.records]
    begin = next(t for t, m in said if m.startswith("ingest: 3000 input rows checked"))
    end = next(t for t, m in said if m.startswith("wrote table documents"))
    during = [m for t, m in said if begin < t < end and m.startswith("ingest: ")]
    assert end - begin > 0.4, "the write took less than two intervals: the corpus is too small to test this"
    assert len(during) >= 2, during
    assert any(m.startswith("ingest: counting tokens: ") for m in during), during
