"""Which stages are current: files known by content and by the path the config names, and a rerun that says why."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from samplemix_spark.pipeline import chained_inputs, plan, run_pipeline
from samplemix_spark.pipeline import execute as execute_stages
from samplemix_spark.tables import state

from . import evaluation_corpus
from .conftest import make_config


def _signature(path: str) -> dict:
    return {entry[0]: tuple(entry[1:]) for entry in state.source_signature([path])}


def test_a_file_is_known_by_its_content_not_its_timestamp_nor_its_folder(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    (first / "src").mkdir(parents=True)
    (first / "src" / "c.jsonl").write_text('{"text": "one"}\n')
    monkeypatch.chdir(first)
    before = _signature("src")
    os.utime("src/c.jsonl", (1, 1))  # a restore from a cache or a tar without times
    assert _signature("src") == before
    shutil.copytree(first, second, copy_function=shutil.copy)  # new modification times, another folder
    monkeypatch.chdir(second)
    assert _signature("src") == before and list(before) == ["src/c.jsonl"]
    # Same size, other content: seen; another size: seen, with both sizes named.
    (second / "src" / "c.jsonl").write_text('{"text": "two"}\n')
    assert _signature("src") != before
    why = state.why_changed("ingest", {"extra": state.source_signature(["src"])},
                            {"extra": [["src/c.jsonl", 20, "x"]]})
    assert why == "source file src/c.jsonl changed: size 16 -> 20"
    assert "same size, new content" in state.why_changed("ingest", {"extra": [["f", 3, "x"]]},
                                                         {"extra": [["f", 3, "y"]]})
    assert state.why_changed("ingest", {"extra": [["f", 3, "x"]]}, {"extra": [["g", 3, "x"]]}) == (
        "source file f is gone; new source file g")


def test_only_the_ends_of_a_large_file_are_read(tmp_path):
    big = tmp_path / "big.bin"
    size = 2 * state.DIGEST_BYTES + 10
    big.write_bytes(b"a" * size)
    digest = state.content_digest(str(big), size)
    with open(big, "r+b") as handle:  # the middle: not read, so not seen
        handle.seek(state.DIGEST_BYTES + 5)
        handle.write(b"b")
    assert state.content_digest(str(big), size) == digest
    with open(big, "r+b") as handle:  # the last MiB: seen
        handle.seek(size - 1)
        handle.write(b"b")
    assert state.content_digest(str(big), size) != digest


def test_a_copied_warehouse_and_its_sources_skip_every_stage_and_a_change_is_named(spark, tmp_path, monkeypatch,
                                                                                    caplog):
    first = tmp_path / "first"
    evaluation_corpus.write(first / "src" / "corpus.jsonl", 8)
    monkeypatch.chdir(first)
    cfg = make_config("wh", ["src/corpus.jsonl"])
    caplog.set_level(logging.INFO)
    run_pipeline(spark, cfg, resume=True)
    assert "stage ingest: runs: no earlier run in this warehouse" in caplog.text
    copy = tmp_path / "copy"
    shutil.copytree(first, copy, copy_function=shutil.copy)
    monkeypatch.chdir(copy)
    caplog.clear()
    results = run_pipeline(spark, cfg, resume=True)
    assert results == [] and "up to date, skipped" in caplog.text
    # A source that grows: ingest says which file changed and how, the next stage that an earlier one did.
    with open("src/corpus.jsonl", "a") as handle:
        handle.write(json.dumps(evaluation_corpus.records(9)[-1]) + "\n")
    caplog.clear()
    execute_stages(spark, cfg, plan(cfg, ("ingest", "quality")), resume=True)
    lines = [r.getMessage() for r in caplog.records if ": runs: " in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("stage ingest: runs: source file src/corpus.jsonl changed: size ")
    assert lines[1] == "stage quality: runs: an earlier stage changed"


def test_a_changed_setting_is_named():
    before = {"config": {"alpha": 0.8, "tau": 0.2}, "previous": "p"}
    after = {"config": {"alpha": 0.5, "tau": 0.2}, "previous": "p"}
    assert state.why_changed("mix", before, after) == "settings changed: alpha: 0.8 -> 0.5"


class _Recorded:
    """A ``StageState`` whose records are the inputs of another config's stages."""

    def __init__(self, cfg, stages):
        self.inputs = dict(zip(stages, chained_inputs(cfg, stages)))

    def recorded_inputs(self, stage):
        return self.inputs.get(stage)


def test_a_refresh_refuses_to_score_new_documents_under_another_model():
    from samplemix_spark.config import build_config
    from samplemix_spark.errors import InputError
    from samplemix_spark.refresh import check_row_settings

    stages = ["quality", "embed"]
    stored = _Recorded(build_config({}), stages)
    # Settings that do not change a row (batch size, device, the number of clusters) refresh as before.
    check_row_settings(stored, build_config({"quality": {"batch_size": 8}, "diversity": {"k": 7, "device": "cpu"}}),
                       stages)
    with pytest.raises(InputError, match=r"^refresh: quality.max_tokens: 512 -> 256 changed since the stored quality "
                                         r"rows were written.*run `samplemix run` \(without --incremental\)"):
        check_row_settings(stored, build_config({"quality": {"max_tokens": 256}}), stages)
    with pytest.raises(InputError, match=r"diversity.pooling: 'auto' -> 'mean' changed since the stored embeddings"):
        check_row_settings(stored, build_config({"diversity": {"pooling": "mean"}}), stages)
    with pytest.raises(InputError, match=r"^refresh: diversity.encoder: .* -> '/models/e5' changed since the stored "
                                         r"embeddings rows were written[^\n]*$"):
        check_row_settings(stored, build_config({"diversity": {"encoder": "/models/e5"}}), stages)
