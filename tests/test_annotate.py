"""Rubric annotation against a chat-completions server started on loopback by the test."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from samplemix_spark.errors import ConfigError
from samplemix_spark.pipeline import run_stage
from samplemix_spark.quality.annotate import DIMENSIONS, InvalidAnswer, validate_answer

from .conftest import make_config, store_for, write_jsonl

SECRET = "sk-test-7f3a9c1e-never-log-me"
GOOD = {"clarity": 1, "completeness": 1, "structure": 1, "credibility": 1, "significance": 0,
        "knowledge": 2, "logic": 1, "score": 7}


class FakeEndpoint(BaseHTTPRequestHandler):
    """Answers by the marker word in the document: VALID, MALFORMED_ONCE, ALWAYS_BAD, RATE_LIMITED, SERVER_ERROR."""

    calls: Counter = Counter()
    auth: set = set()
    lock = threading.Lock()

    def log_message(self, *args):  # keep the test output clean
        pass

    def _reply(self, status: int, content: str | None = None, headers: dict | None = None) -> None:
        body = json.dumps({"choices": [{"message": {"content": content}}]}).encode() if content is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        document = request["messages"][1]["content"]
        marker = document.split()[0]
        with self.lock:
            self.calls[document] += 1
            n = self.calls[document]
            self.auth.add(self.headers.get("Authorization"))
        if marker == "RATE_LIMITED" and n <= 2:
            return self._reply(429, headers={"Retry-After": "0"})
        if marker == "SERVER_ERROR":
            return self._reply(500)
        if marker == "UNAUTHORIZED":
            return self._reply(401)
        if marker == "MALFORMED_ONCE" and n == 1:
            return self._reply(200, "Sure! Here is my rating: seven out of ten")
        if marker == "ALWAYS_BAD":
            return self._reply(200, json.dumps({**GOOD, "score": 9}))
        return self._reply(200, json.dumps(GOOD))


@pytest.fixture
def endpoint():
    FakeEndpoint.calls = Counter()
    FakeEndpoint.auth = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _config(tmp_path, url, docs):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "domain": "d", "quality_score": 1,
                                                   "diversity_score": 0.5} for t in docs])
    return make_config(tmp_path / "wh", [source], quality={"annotate": {
        "base_url": url, "model": "rubric-model", "max_retries": 2, "backoff_s": 0.01, "timeout_s": 5,
        "concurrency": 3}})


def test_valid_malformed_rate_limited_and_failing_answers(spark, tmp_path, endpoint, monkeypatch, caplog, capfd):
    monkeypatch.setenv("SAMPLEMIX_ANNOTATE_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    docs = [f"VALID document number {i} about rivers." for i in range(6)] + [
        "MALFORMED_ONCE a document about mountains.", "RATE_LIMITED a document about lakes.",
        "ALWAYS_BAD a document about deserts.", "SERVER_ERROR a document about forests.",
        "UNAUTHORIZED a document about glaciers."]
    cfg = _config(tmp_path, endpoint, docs)
    run_stage(spark, cfg, "ingest")
    rows = run_stage(spark, cfg, "annotate").rows
    assert rows == {"annotations": 8, "annotation_rejects": 3}

    store = store_for(spark, cfg)
    annotations = store.read("annotations").toPandas().set_index("text")
    rejects = store.read("annotation_rejects").toPandas()
    assert (annotations["score"] == 7).all() and (annotations[list(DIMENSIONS)].sum(axis=1) == 7).all()
    assert annotations.loc["MALFORMED_ONCE a document about mountains.", "attempts"] == 2
    assert annotations.loc["RATE_LIMITED a document about lakes.", "attempts"] == 3
    assert annotations["response_sha256"].str.len().eq(64).all()
    assert sorted(rejects["reason"]) == ["http_401", "http_500", "score_mismatch"]
    assert rejects.set_index("reason")["attempts"].to_dict() == {"http_401": 1, "http_500": 3, "score_mismatch": 3}
    assert FakeEndpoint.auth == {f"Bearer {SECRET}"}

    # The key reaches the endpoint and nothing else: no log line, output or table holds it.
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text + out + err
    for table in ("annotations", "annotation_rejects", "documents"):
        assert SECRET not in store.read(table).toPandas().to_csv()


def test_annotations_train_the_evaluator_directly(spark, tmp_path, endpoint, monkeypatch):
    from samplemix_spark.quality.train import load_labels
    from samplemix_spark.config import QualityTrainConfig

    monkeypatch.setenv("SAMPLEMIX_ANNOTATE_API_KEY", SECRET)
    cfg = _config(tmp_path, endpoint, [f"VALID text {i}" for i in range(25)])
    run_stage(spark, cfg, "ingest")
    run_stage(spark, cfg, "annotate")
    labels = load_labels(spark, store_for(spark, cfg), QualityTrainConfig(labels=["table:annotations"]))
    assert len(labels) == 25 and (labels["score"] == 7).all()


def test_failures_never_carry_the_key(spark, tmp_path, monkeypatch, caplog):
    from samplemix_spark.quality.annotate import AnnotateStep

    monkeypatch.setenv("SAMPLEMIX_ANNOTATE_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    cfg = _config(tmp_path, "http://127.0.0.1:9/v1", ["VALID but the endpoint is down"])  # nothing listens
    run_stage(spark, cfg, "ingest")
    run_stage(spark, cfg, "annotate")
    rejects = store_for(spark, cfg).read("annotation_rejects").toPandas()
    assert rejects["reason"].str.startswith("network_error").all()
    broken = _config(tmp_path / "b", None, ["VALID"])
    with pytest.raises(ConfigError) as raised:
        AnnotateStep(broken).check()
    assert SECRET not in str(raised.value) + caplog.text + rejects.to_csv()


def test_missing_key_is_refused_without_showing_any_key(tmp_path, endpoint, monkeypatch):
    monkeypatch.delenv("SAMPLEMIX_ANNOTATE_API_KEY", raising=False)
    cfg = _config(tmp_path, endpoint, ["VALID x"])
    from samplemix_spark.quality.annotate import AnnotateStep

    with pytest.raises(ConfigError, match="SAMPLEMIX_ANNOTATE_API_KEY"):
        AnnotateStep(cfg).check()


@pytest.mark.parametrize("content, reason", [
    ("not json", "not_json"),
    ("[1, 2]", "not_json_object"),
    (json.dumps({**GOOD, "logic": 4, "score": 10}), "out_of_range:logic"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "clarity"}), "missing_or_non_integer:clarity"),
    (json.dumps({**GOOD, "score": 8}), "score_mismatch"),
])
def test_validation_names_the_problem(content, reason):
    with pytest.raises(InvalidAnswer) as raised:
        validate_answer(content)
    assert raised.value.reason == reason


def test_fenced_json_answer_is_accepted():
    assert validate_answer("```json\n" + json.dumps(GOOD) + "\n```")["score"] == 7
