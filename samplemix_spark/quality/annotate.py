"""``samplemix annotate``: rubric quality labels from an OpenAI-compatible chat endpoint.

Driver side: ``AnnotateStep`` checks the endpoint settings and the key variable,
samples documents by a hash of (doc_id, seed), and writes ``annotations`` (valid
labels, read directly by ``train-quality`` via ``table:annotations``) and
``annotation_rejects`` (doc_id, reason, attempts).

Executor side: ``mapInPandas`` sends each batch's documents with at most
``concurrency`` requests in flight, retries 429/5xx and network errors with
exponential backoff (honouring ``Retry-After``), retries answers that fail
validation, and gives up with a reason after ``max_retries`` retries.

The API key is read from the environment on the executor that sends the
request (on clusters: ``spark.executorEnv.<VAR>`` or a secret-backed cluster
environment variable). It is never part of the UDF closure, a log line, an
exception message or a table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator, Optional

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import AnnotateConfig, SampleMixConfig
from samplemix_spark.errors import ConfigError
from samplemix_spark.hashing import ANNOTATION_SAMPLE, uniform
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)

# (name, maximum points, what the annotator judges): SPEC §1, in our words.
RUBRIC = (
    ("clarity", 1, "the language is clear, fluent and correct"),
    ("completeness", 1, "the text is complete and coherent rather than a fragment or a jumble"),
    ("structure", 1, "the text is well organised and its style suits its purpose"),
    ("credibility", 1, "the content is accurate and credible; give 0 to pornographic, drug-related or "
                       "violent content"),
    ("significance", 1, "the text is significant or original; give 0 to templated or machine-generated text"),
    ("knowledge", 2, "how much knowledge the text carries: 0 none, 1 some, 2 a lot"),
    ("logic", 3, "logical soundness and analytical depth: 0 to 2 for ordinary texts; 3 only for in-depth "
                 "science, technology, engineering or mathematics reasoning"),
)
DIMENSIONS = tuple(name for name, _, _ in RUBRIC)

SYSTEM_PROMPT = (
    "You rate documents for a language-model pre-training corpus. Judge the document on seven "
    "dimensions and give each an integer score:\n"
    + "\n".join(f"- {name} (0 to {top}): {what}" for name, top, what in RUBRIC)
    + "\nThe final score is the sum of the seven (0 to 10). Answer with one JSON object and nothing "
    "else, with the keys " + ", ".join(DIMENSIONS) + " and score."
)

ANNOTATION_SCHEMA = ("doc_id string, text string, " + ", ".join(f"{d} int" for d in DIMENSIONS)
                     + ", score int, model string, response_sha256 string, status string, reason string, "
                       "attempts int")
ANNOTATION_COLUMNS = [part.strip().split(" ")[0] for part in ANNOTATION_SCHEMA.split(",")]


class InvalidAnswer(Exception):
    """An answer that does not follow the rubric; ``reason`` goes to the rejects table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_answer(content: str) -> dict[str, int]:
    """The seven dimension scores and their sum, or InvalidAnswer naming what is wrong."""
    text = content.strip()
    if text.startswith("```"):  # tolerate a fenced JSON block
        text = text.strip("`").removeprefix("json").strip()
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidAnswer("not_json") from None
    if not isinstance(answer, dict):
        raise InvalidAnswer("not_json_object")
    scores = {}
    for name, top, _ in RUBRIC:
        value = answer.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidAnswer(f"missing_or_non_integer:{name}")
        if not 0 <= value <= top:
            raise InvalidAnswer(f"out_of_range:{name}")
        scores[name] = value
    if answer.get("score") != sum(scores.values()):
        raise InvalidAnswer("score_mismatch")
    return {**scores, "score": sum(scores.values())}


@dataclass
class Annotation:
    doc_id: str
    text: str
    scores: dict = field(default_factory=dict)
    response_sha256: Optional[str] = None
    status: str = "rejected"
    reason: Optional[str] = None
    attempts: int = 0

    def row(self, model: str) -> dict:
        return {"doc_id": self.doc_id, "text": self.text, **{d: self.scores.get(d) for d in DIMENSIONS},
                "score": self.scores.get("score"), "model": model, "response_sha256": self.response_sha256,
                "status": self.status, "reason": self.reason, "attempts": self.attempts}


class RubricClient:
    """Chat-completions calls with timeout, retry and backoff. One per executor batch."""

    def __init__(self, cfg: AnnotateConfig, api_key: str) -> None:
        self.cfg = cfg
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        self._url = cfg.base_url.rstrip("/") + "/chat/completions"

    def _request(self, text: str) -> tuple[int, str, Optional[str]]:
        body = json.dumps({"model": self.cfg.model, "temperature": 0,
                           "response_format": {"type": "json_object"},
                           "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                        {"role": "user", "content": text[:self.cfg.max_chars]}]}).encode()
        request = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                return response.status, response.read().decode("utf-8", "replace"), None
        except urllib.error.HTTPError as error:
            return error.code, "", error.headers.get("Retry-After")

    def _wait(self, attempt: int, retry_after: Optional[str]) -> None:
        delay = self.cfg.backoff_s * (2 ** attempt)
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            delay = max(delay, float(retry_after))
        time.sleep(min(delay, 60.0))

    def annotate(self, doc_id: str, text: str) -> Annotation:
        result = Annotation(doc_id, text)
        for attempt in range(self.cfg.max_retries + 1):
            result.attempts = attempt + 1
            try:
                status, body, retry_after = self._request(text)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                result.reason, retry_after = f"network_error:{type(error).__name__}", None
            else:
                if status == 200:
                    try:
                        content = json.loads(body)["choices"][0]["message"]["content"]
                        result.response_sha256 = hashlib.sha256(content.encode()).hexdigest()
                        result.scores, result.status, result.reason = validate_answer(content), "ok", None
                        return result
                    except InvalidAnswer as invalid:
                        result.reason = invalid.reason
                    except (KeyError, IndexError, TypeError, json.JSONDecodeError):
                        result.reason = "malformed_response"
                elif status == 429 or status >= 500:
                    result.reason = f"http_{status}"
                else:  # other client errors (401, 404, ...) will not improve on retry
                    result.reason = f"http_{status}"
                    return result
            if attempt < self.cfg.max_retries:
                self._wait(attempt, retry_after)
        return result


def annotate_batches(cfg: AnnotateConfig):
    """The mapInPandas function; runs on executors and reads the key there."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        client = RubricClient(cfg, os.environ.get(cfg.api_key_env, ""))
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            for batch in batches:
                results = pool.map(client.annotate, batch["doc_id"], batch["text"])
                yield pd.DataFrame([r.row(cfg.model) for r in results], columns=ANNOTATION_COLUMNS)

    return run


class AnnotateStep:
    """Label a hashed sample of ``documents`` with the rubric; write annotations and their rejects."""

    name = "annotate"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        annotate = self.cfg.quality.annotate
        for key in ("base_url", "model"):
            if not getattr(annotate, key):
                raise ConfigError(f"config key 'quality.annotate.{key}' is not set")
        if not os.environ.get(annotate.api_key_env):
            raise ConfigError(f"environment variable {annotate.api_key_env} (quality.annotate.api_key_env) "
                              "is not set: it holds the endpoint's API key")

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        annotate = self.cfg.quality.annotate
        documents = store.read("documents").select("doc_id", "text")
        if annotate.sample_fraction < 1:
            chosen = uniform(F.col("doc_id"), annotate.seed, ANNOTATION_SAMPLE, store.hash_scheme)
            documents = documents.filter(chosen < annotate.sample_fraction)
        store.write(documents.mapInPandas(annotate_batches(annotate), ANNOTATION_SCHEMA), "annotations")
        everything = store.read("annotations")
        store.write(everything.filter(F.col("status") != "ok").select("doc_id", "reason", "attempts"),
                    "annotation_rejects")
        store.write(everything.filter(F.col("status") == "ok"), "annotations")
        counts = {"annotations": store.read("annotations").count(),
                  "annotation_rejects": store.read("annotation_rejects").count()}
        log.info("annotate: %d labelled, %d rejected", counts["annotations"], counts["annotation_rejects"])
        return counts
