"""domain.method: classifier: a corpus without a domain column, labelled at ingest by a tiny random classifier.

Answers known in advance: each document's domain is the top class of a plain
transformers loop over its text (the fastText model's top label without its
prefix), training and held-out documents alike; no row is rejected for lacking
a domain; a checkpoint without named classes fails in one line before any stage.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samplemix_spark.errors import ConfigError
from samplemix_spark.models.classifier import ClassifierSpec, TextClassifier
from samplemix_spark.pipeline import plan, run_stage

from .conftest import make_config, store_for, write_jsonl
from .test_quality_classifier import LABELS, TEXTS, _checkpoint, _fasttext_model, _plain_logits

_WORDS = sorted({w for t in TEXTS for w in t.split()})
# 24 texts in the classifiers' vocabulary, each its own word order (no two share a 13-word window); no domain field.
CORPUS = [" ".join(np.random.default_rng(i).choice(_WORDS, 8 + i)) for i in range(24)]


def _domain_checkpoint(folder):
    """The three-class checkpoint with a head fitted to this corpus's spread, so random weights tell texts apart.

    A tiny random encoder gives nearly the same pooled vector for every text; the
    head projects the centred, scaled vectors on random directions instead.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    checkpoint = _checkpoint(folder, "classes")
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    with torch.no_grad():
        pooled = torch.stack([model.pooler(model.deberta(**tokenizer(t, truncation=True, max_length=32,
                                                                      return_tensors="pt")).last_hidden_state)[0]
                              for t in CORPUS])
        directions = torch.randn(len(LABELS), pooled.shape[1], generator=torch.Generator().manual_seed(3))
        weight = directions / (pooled.std(0) + 1e-12) / pooled.shape[1] ** 0.5
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(-weight @ pooled.mean(0))
    model.save_pretrained(str(checkpoint))
    return checkpoint


def _config(tmp_path, classifier: dict, **ingest):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "quality_score": 1, "diversity_score": 0.5}
                                                   for t in CORPUS])
    return make_config(tmp_path / "wh", [source], ingest=ingest,
                       domain={"method": "classifier", "max_tokens": 32, "classifier": classifier})


def test_every_document_is_labelled_with_the_top_class_training_and_held_out(spark, tmp_path):
    checkpoint = _domain_checkpoint(tmp_path / "classes")
    cfg = _config(tmp_path, {"path": str(checkpoint)}, holdout_fraction=0.3)
    run_stage(spark, cfg, "ingest")
    store = store_for(spark, cfg)
    documents = store.read("documents").toPandas()
    holdout = store.read("holdout").toPandas()
    assert store.read("rejects").count() == 0 and len(documents) + len(holdout) == len(CORPUS)  # none lacks a domain
    assert len(holdout) > 0
    for table in (documents, holdout):
        assert table["domain"].tolist() == [LABELS[i] for i in shares_of(checkpoint, table).argmax(1)]
    # The confidence is the executor-side code's own softmax (this head magnifies the padding's last digits).
    direct = TextClassifier(checkpoint, ClassifierSpec(), 32, "cpu").top_labels(documents["text"].tolist())
    np.testing.assert_allclose(documents["domain_confidence"], direct.confidence, rtol=1e-9)
    np.testing.assert_allclose(documents["domain_confidence"], shares_of(checkpoint, documents).max(1), atol=1e-3)
    assert documents["domain"].nunique() > 1  # the labels tell documents apart


def shares_of(checkpoint, table) -> np.ndarray:
    return torch.softmax(torch.from_numpy(_plain_logits(checkpoint, table["text"], 32)), -1).numpy()


def test_a_fasttext_domain_classifier_names_its_labels_without_the_prefix(spark, tmp_path):
    pytest.importorskip("fasttext")
    from samplemix_spark.models.classifier import FastTextClassifier

    path, _ = _fasttext_model(tmp_path / "m")
    cfg = _config(tmp_path, {"path": str(path), "format": "fasttext"})
    run_stage(spark, cfg, "ingest")
    documents = store_for(spark, cfg).read("documents").toPandas()
    top = FastTextClassifier(path).top_labels(documents["text"].tolist())
    assert documents["domain"].tolist() == top.names and set(top.names) <= {"hq", "cc"}
    assert documents["domain_confidence"].tolist() == top.confidence.tolist()


def test_a_checkpoint_without_named_classes_fails_in_one_line_before_any_stage(tmp_path):
    checkpoint = _checkpoint(tmp_path / "regression", "regression")
    cfg = _config(tmp_path, {"path": str(checkpoint)})
    with pytest.raises(ConfigError) as failure:
        plan(cfg, ("ingest",))
    assert "'domain.classifier.path': a domain classifier needs named classes" in str(failure.value)
    assert "\n" not in str(failure.value) and not (tmp_path / "wh").exists()
