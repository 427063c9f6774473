"""quality.method: classifier, with tiny random checkpoints saved the way real ones are (no network).

Answers known in advance: the scores equal a plain transformers loop over the
same texts and the paper's mapping (to 1e-5, CPU fp32); a score does not depend
on its batch-mates; a regression head maps linearly from its range and clips; a
classes head gives the expected value of its labels' values; a config that does
not match the checkpoint fails in one line before any stage runs.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from samplemix_spark.config import build_config
from samplemix_spark.errors import ConfigError
from samplemix_spark.models.classifier import ClassifierSpec, TextClassifier
from samplemix_spark.pipeline import plan, run_stage

from .conftest import make_config, store_for, write_jsonl

TEXTS = ["the river carried silt to the delta", "a short note", "farmers planted after the flood " * 30,
         "glaciers store fresh water", "the delta grew", "silt and water and farmers and glaciers " * 9]
LABELS = {0: "Low", 1: "Medium", 2: "High"}


def _checkpoint(folder, kind: str):
    """A BERT regression head (one output) or a DeBERTa-v2 head with three named classes, saved to ``folder``."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
    )

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in TEXTS for w in re.findall(r"\w+", t)})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    shape = {"vocab_size": len(words) + 5, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 512}
    torch.manual_seed(0)
    if kind == "regression":
        model = BertForSequenceClassification(BertConfig(num_labels=1, **shape))
    else:
        model = DebertaV2ForSequenceClassification(DebertaV2Config(
            id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, **shape))
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifiers")
    return {kind: _checkpoint(root / kind, kind) for kind in ("regression", "classes")}


def _plain_logits(folder, texts, max_tokens):
    """One text at a time through the transformers API, nothing of ours in between."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        return np.stack([model(**tokenizer(t, truncation=True, max_length=max_tokens, return_tensors="pt"))
                         .logits[0].double().numpy() for t in texts])


def test_regression_scores_equal_a_plain_loop_mapped_from_the_range_and_clipped(checkpoints):
    spec = ClassifierSpec("regression", (-0.05, 0.05))
    scores = TextClassifier(checkpoints["regression"], spec, max_tokens=16, device="cpu").score(TEXTS, 4)
    raw = _plain_logits(checkpoints["regression"], TEXTS, 16)[:, 0]
    expected = np.clip((raw + 0.05) / 0.1 * 10, 0, 10)
    np.testing.assert_allclose(scores.expected, expected, atol=1e-5)
    assert scores.quality.tolist() == np.floor(expected + 0.5).astype(int).tolist()
    assert scores.probabilities is None


def test_fineweb_edus_int_score_of_3_is_an_expected_q_above_5(checkpoints, tmp_path):
    """cosmopedia's filter keeps int(round(max(0, min(score, 5)))) >= 3; ours keeps q_expected > 5 at range [0, 5]."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoints["regression"]))
    raw = _plain_logits(checkpoints["regression"], TEXTS, 16)[:, 0]
    with torch.no_grad():  # output 50 (raw - median) + 2.5: texts fall on both sides of the cut
        model.classifier.bias.copy_(50.0 * (model.classifier.bias - float(np.median(raw))) + 2.5)
        model.classifier.weight *= 50.0
    folder = tmp_path / "edu"
    model.save_pretrained(str(folder))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (checkpoints["regression"] / name).exists():
            (folder / name).write_bytes((checkpoints["regression"] / name).read_bytes())
    score = _plain_logits(folder, TEXTS, 16)[:, 0]
    theirs = np.array([int(round(max(0, min(s, 5)))) >= 3 for s in score])
    ours = TextClassifier(folder, ClassifierSpec("regression", (0.0, 5.0)), 16, "cpu").score(TEXTS).expected > 5.0
    assert ours.tolist() == theirs.tolist() and 0 < theirs.sum() < len(TEXTS)


def test_classes_give_the_expected_value_of_their_labels(checkpoints):
    values = {"Low": 0.0, "Medium": 5.0, "High": 10.0}
    scores = TextClassifier(checkpoints["classes"], ClassifierSpec("classes", class_values=values),
                            max_tokens=32, device="cpu").score(TEXTS, 2)
    shares = torch.softmax(torch.from_numpy(_plain_logits(checkpoints["classes"], TEXTS, 32)), -1).numpy()
    np.testing.assert_allclose(np.stack(scores.probabilities), shares, atol=1e-5)
    np.testing.assert_allclose(scores.expected, shares @ np.array([0.0, 5.0, 10.0]), atol=1e-5)


def test_a_score_does_not_depend_on_its_batch_mates(checkpoints):
    classifier = TextClassifier(checkpoints["regression"], ClassifierSpec(), max_tokens=64, device="cpu")
    alone = [classifier.score([t], 1).expected[0] for t in TEXTS]
    together = classifier.score(TEXTS[::-1], 5).expected[::-1]
    assert together.tolist() == alone  # exact: the same shapes and rows whatever the batch


def _config(tmp_path, classifier: dict):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "domain": "d" if i % 2 else "e", "quality_score": 1,
                                                     "diversity_score": 0.5} for i, t in enumerate(TEXTS)])
    return make_config(tmp_path / "wh", [source], quality={"method": "classifier", "max_tokens": 32,
                                                           "classifier": classifier})


@pytest.mark.parametrize("classifier, message", [
    ({"path": "missing-folder"}, "'quality.classifier.path': 'missing-folder' does not exist"),
    ({"head": "classes", "class_values": {"Low": 0, "High": 10}},
     "'quality.classifier.class_values': the checkpoint's labels are Low, Medium, High; class_values names High, Low"),
    ({"head": "regression"}, "'quality.classifier.head': 'regression' needs one output; the checkpoint has 3"),
])
def test_a_config_that_does_not_match_the_checkpoint_fails_in_one_line_before_any_stage(
        checkpoints, tmp_path, classifier, message):
    path = classifier.pop("path", str(checkpoints["classes"]))
    cfg = _config(tmp_path, {"path": path, **classifier})
    with pytest.raises(ConfigError) as failure:
        plan(cfg, ("ingest", "quality"))
    assert message in str(failure.value) and "\n" not in str(failure.value)
    assert not (tmp_path / "wh").exists()


def test_classes_without_values_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'quality.classifier.class_values': head 'classes' needs"):
        _config(tmp_path, {"path": "x", "head": "classes"})


def test_the_quality_stage_writes_the_classifier_scores(spark, checkpoints, tmp_path):
    values = {"Low": 0, "Medium": 5, "High": 10}
    cfg = _config(tmp_path, {"path": str(checkpoints["classes"]), "head": "classes", "class_values": values})
    for stage in ("ingest", "quality"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    table = store.read("quality").join(store.read("documents").select("doc_id", "text"), "doc_id").toPandas()
    assert len(table) == len(TEXTS) and set(table["method"]) == {"classifier"}
    assert set(table["model_id"]) == {"classes"} and re.fullmatch(r"[0-9a-f]{12}", table["model_version"].iat[0])
    shares = torch.softmax(torch.from_numpy(_plain_logits(checkpoints["classes"], table["text"], 32)), -1).numpy()
    np.testing.assert_allclose(table["quality_expected"], shares @ np.array([0.0, 5.0, 10.0]), atol=1e-5)
    np.testing.assert_allclose(np.stack(table["quality_probs"]), shares, atol=1e-5)
    assert table["quality"].tolist() == np.floor(table["quality_expected"] + 0.5).astype(int).tolist()


def test_mixing_reads_the_expected_score_when_asked(spark, checkpoints, tmp_path):
    import dataclasses

    values = {"Low": 0, "Medium": 5, "High": 10}
    cfg = _config(tmp_path, {"path": str(checkpoints["classes"]), "head": "classes", "class_values": values})
    cfg = dataclasses.replace(cfg, mixing=dataclasses.replace(cfg.mixing, quality_source="expected"))
    for stage in ("ingest", "quality", "diversity", "mix"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    mixed = store.read("weights").join(store.read("quality"), "doc_id").toPandas()
    assert mixed["q"].tolist() == mixed["quality_expected"].tolist()
    assert store.read("mix_run").collect()[0]["quality_source"] == "expected"


def test_the_expected_score_needs_a_method_that_writes_one(spark, tmp_path):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "domain": "d", "quality_score": 1,
                                                     "diversity_score": 0.5} for t in TEXTS])
    cfg = make_config(tmp_path / "wh", [source], mixing={"quality_source": "expected"})
    for stage in ("ingest", "quality", "diversity"):
        run_stage(spark, cfg, stage)
    with pytest.raises(Exception, match="'mixing.quality_source': 'expected' needs the quality table's "
                                        "quality_expected column"):
        run_stage(spark, cfg, "mix")


def _fasttext_model(folder):
    """A tiny supervised fastText model (DCLM's filter has the same labels), trained here."""
    import fasttext

    folder.mkdir(parents=True, exist_ok=True)
    lines = ([f"__label__hq the river carried silt to the delta over {i} centuries" for i in range(30)]
             + [f"__label__cc buy cheap pills now click here offer {i}" for i in range(30)])
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(str(folder / "train.txt"), epoch=20, lr=0.5, dim=8, thread=1, seed=0,
                                      verbose=0)
    model.save_model(str(folder / "quality.bin"))
    return folder / "quality.bin", model


def test_fasttext_scores_are_ten_times_the_positive_probability(tmp_path):
    pytest.importorskip("fasttext")
    from samplemix_spark.models.classifier import FastTextClassifier

    path, model = _fasttext_model(tmp_path)
    texts = ["the river carried silt\nto the delta", "buy cheap pills now", "an unrelated sentence",
             "  the river\u2028carried silt\r\nto the delta\x1cover centuries \n"]
    scores = FastTextClassifier(path, "__label__hq").score(texts)
    # Independently: softmax of the output matrix times the sentence vector of DCLM's input line.
    labels = model.get_labels()
    for text, shares, q in zip(texts, scores.probabilities, scores.expected):
        logits = model.get_output_matrix() @ model.get_sentence_vector(" ".join(text.strip().splitlines()))
        oracle = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(shares, oracle, atol=1e-4)  # fastText sums in float32
        assert q == pytest.approx(10 * oracle[labels.index("__label__hq")], abs=1e-3)
    assert scores.expected[0] > 5 > scores.expected[1]


def test_dclms_probability_cut_is_an_expected_q_cut_ten_times_larger(tmp_path):
    """DCLM keeps P(__label__hq) >= 0.018112 on its preprocessed line; ours keeps q_expected >= 0.18112."""
    pytest.importorskip("fasttext")
    from samplemix_spark.models.classifier import FastTextClassifier

    path, model = _fasttext_model(tmp_path)
    texts = ["the river carried silt to the delta", "buy cheap pills now click here", "the delta over centuries",
             "cheap offer now", "a sentence about nothing in particular"]
    hq = model.get_labels().index("__label__hq")
    theirs = []
    for text in texts:  # fastText's probability: the softmax of the output matrix times the sentence vector
        logits = model.get_output_matrix() @ model.get_sentence_vector(" ".join(text.strip().splitlines()))
        theirs.append(bool(np.exp(logits[hq] - logits.max()) / np.exp(logits - logits.max()).sum() >= 0.018112))
    ours = FastTextClassifier(path, "__label__hq").score(texts).expected >= 0.18112
    assert ours.tolist() == theirs and 0 < sum(theirs) < len(texts)


def test_a_fasttext_label_the_model_lacks_fails_in_one_line(tmp_path):
    pytest.importorskip("fasttext")
    path, _ = _fasttext_model(tmp_path / "m")
    cfg = _config(tmp_path, {"path": str(path), "format": "fasttext", "positive_label": "__label__high"})
    with pytest.raises(ConfigError, match="'quality.classifier.positive_label': '__label__high' is not a label of "
                                          "the model; it has __label__"):
        plan(cfg, ("ingest", "quality"))


def test_the_quality_stage_scores_with_a_fasttext_model(spark, tmp_path):
    pytest.importorskip("fasttext")
    from samplemix_spark.models.classifier import FastTextClassifier

    path, _ = _fasttext_model(tmp_path / "m")
    cfg = _config(tmp_path, {"path": str(path), "format": "fasttext", "positive_label": "__label__hq"})
    for stage in ("ingest", "quality"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    table = store.read("quality").join(store.read("documents").select("doc_id", "text"), "doc_id").toPandas()
    expected = FastTextClassifier(path, "__label__hq").score(table["text"].tolist()).expected
    assert table["quality_expected"].tolist() == expected.tolist()
    assert set(table["model_id"]) == {"quality.bin"} and len(table) == len(TEXTS)


def _deberta_tokenizer(folder) -> None:
    """DeBERTa-v3's tokenizer layout (``spm.model`` and a tokenizer_config.json, no tokenizer.json), its
    SentencePiece model trained offline on the test texts; loading it converts the model, as for the real one."""
    import json

    import sentencepiece

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.txt").write_text("\n".join(TEXTS) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"), model_prefix=str(folder / "spm"), vocab_size=24, hard_vocab_limit=False,
        model_type="word", pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]",
        unk_id=3, unk_piece="[UNK]", user_defined_symbols=["[MASK]"], num_threads=1, minloglevel=2)
    for name in ("corpus.txt", "spm.vocab"):
        (folder / name).unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "DebertaV2Tokenizer",
                                                               "do_lower_case": False}))


def _nvidia_layout(root):
    """NVIDIA's layout: a checkpoint of backbone weights under ``model.`` and an ``fc`` head, whose config.json is
    not a transformers config, with its own DeBERTa-v2 tokenizer (``spm.model``); beside it, the backbone's folder
    (a DeBERTa-v2 config.json with its real ``model_type``, no weights)."""
    import json

    from safetensors.torch import save_file
    from transformers import DebertaV2Config, DebertaV2Model

    backbone = _checkpoint(root / "backbone", "classes")  # a DeBERTa-v2 config.json (and a tokenizer)
    for weights in backbone.glob("*.safetensors"):
        weights.unlink()
    assert json.loads((backbone / "config.json").read_text())["model_type"] == "deberta-v2"
    torch.manual_seed(1)
    model = DebertaV2Model(DebertaV2Config.from_pretrained(str(backbone)))
    fc = torch.nn.Linear(model.config.hidden_size, len(LABELS))
    checkpoint = root / "quality-classifier-deberta"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({
        "base_model": "microsoft/deberta-v3-base", "fc_dropout": 0.2, "max_len": 1024,
        "id2label": {str(k): v for k, v in LABELS.items()}, "label2id": {v: k for k, v in LABELS.items()}}))
    tensors = {**{f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
               "fc.weight": fc.weight.detach().clone(), "fc.bias": fc.bias.detach().clone()}
    save_file(tensors, str(checkpoint / "model.safetensors"))
    _deberta_tokenizer(checkpoint)
    return backbone, checkpoint, model.eval(), fc


def test_a_backbone_head_checkpoint_scores_as_nvidias_forward_does(tmp_path):
    from transformers import AutoTokenizer

    from samplemix_spark.models.classifier import BackboneLayout

    backbone, checkpoint, model, fc = _nvidia_layout(tmp_path)
    values = {"Low": 0.0, "Medium": 5.0, "High": 10.0}
    classifier = TextClassifier(checkpoint, ClassifierSpec("classes", class_values=values), max_tokens=32,
                                device="cpu", layout=BackboneLayout(str(backbone)))
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))  # NeMo's checkpoints ship their tokenizer
    assert type(tokenizer).__name__.startswith("DebertaV2Tokenizer")
    with torch.inference_mode():  # NVIDIA's forward: fc over every token, softmax of token 0
        shares = np.stack([torch.softmax(fc(model(**tokenizer(t, truncation=True, max_length=32,
                                                               return_tensors="pt")).last_hidden_state)[:, 0, :], 1)
                           [0].double().numpy() for t in TEXTS])
    scores = classifier.score(TEXTS, batch_size=4)
    np.testing.assert_allclose(scores.expected, shares @ np.array([0.0, 5.0, 10.0]), atol=1e-5)
    np.testing.assert_allclose(np.stack(scores.probabilities), shares, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"head_key": "classifier"}, "'quality.classifier.head_key': model.safetensors has no classifier.weight"),
    ({"backbone": "{root}/bert"}, "'quality.classifier.backbone': the checkpoint lacks"),
    ({"backbone": "{root}/quality-classifier-deberta"},
     "'quality.classifier.backbone': '{root}/quality-classifier-deberta' is not a transformers model folder"),
    ({"backbone": "{root}/wide"}, "'quality.classifier.backbone': 1 of the checkpoint's backbone weights differ in "
                                  "shape from '{root}/wide''s config (e.g. embeddings.word_embeddings.weight: (24, 32) "
                                  "against (96, 32)): another backbone; the checkpoint was trained on "
                                  "microsoft/deberta-v3-base"),
    ({"path": "{root}/untokenized", "backbone": "{root}/untokenized-backbone"},
     "'quality.classifier.backbone': no tokenizer loads from '{root}/untokenized-backbone'"),
])
def test_a_backbone_head_that_does_not_fit_fails_in_one_line_before_any_stage(tmp_path, change, message):
    import json
    import shutil

    backbone, checkpoint, _, _ = _nvidia_layout(tmp_path / "models")
    _checkpoint(tmp_path / "models" / "bert", "regression")
    wide = shutil.copytree(backbone, tmp_path / "models" / "wide")  # mdeberta's case: another vocabulary size
    config = json.loads((wide / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**config, "vocab_size": 96}))
    untokenized = shutil.copytree(checkpoint, tmp_path / "models" / "untokenized")
    bare = tmp_path / "models" / "untokenized-backbone"
    bare.mkdir()
    shutil.copy(backbone / "config.json", bare / "config.json")
    for name in ("spm.model", "tokenizer_config.json"):
        (untokenized / name).unlink()
    settings = {"path": str(checkpoint), "format": "backbone_head", "backbone": str(backbone), "head": "classes",
                "class_values": {"Low": 0, "Medium": 5, "High": 10}}
    settings.update({k: v.format(root=tmp_path / "models") for k, v in change.items()})
    cfg = _config(tmp_path, settings)
    with pytest.raises(ConfigError) as failure:
        plan(cfg, ("ingest", "quality"))
    assert message.format(root=tmp_path / "models") in str(failure.value) and "\n" not in str(failure.value)
    assert not (tmp_path / "wh").exists()


def test_the_quality_stage_scores_with_a_backbone_head_checkpoint(spark, tmp_path):
    from samplemix_spark.models.classifier import BackboneLayout

    backbone, checkpoint, _, _ = _nvidia_layout(tmp_path / "models")
    values = {"Low": 0, "Medium": 5, "High": 10}
    cfg = _config(tmp_path, {"path": str(checkpoint), "format": "backbone_head", "backbone": str(backbone),
                             "head": "classes", "class_values": values, "max_chars": 15})
    assert _config(tmp_path, {"path": str(checkpoint), "format": "backbone_head", "backbone": str(backbone),
                              "head": "classes", "class_values": values}).quality.classifier.char_cap == 6000
    domain = {"method": "classifier", "classifier": {"path": str(checkpoint), "format": "backbone_head",
                                                     "backbone": str(backbone)}}
    assert build_config({"domain": domain}).domain.classifier.char_cap == 2000  # NeMo's domain classifiers
    for stage in ("ingest", "quality"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    table = store.read("quality").join(store.read("documents").select("doc_id", "text"), "doc_id").toPandas()
    spec = ClassifierSpec("classes", class_values={k: float(v) for k, v in values.items()})
    direct = TextClassifier(checkpoint, spec, 32, "cpu", layout=BackboneLayout(str(backbone)))
    cut = direct.score([t[:15] for t in table["text"]])  # NeMo Curator cuts the characters before tokenizing
    np.testing.assert_allclose(table["quality_expected"], cut.expected, rtol=1e-9)
    whole = direct.score(table["text"].tolist())
    assert np.abs(whole.expected - cut.expected).max() > 1e-6  # the cut changed what the model read
    assert set(table["model_id"]) == {"quality-classifier-deberta"} and len(table) == len(TEXTS)


def test_an_input_template_feeds_the_classifier_the_filled_text(spark, checkpoints, tmp_path):
    urls = ["https://delta.example/silt", None, "https://farm.example", "glacier", "https://d.example", ""]
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "domain": "d", "url": u, "quality_score": 1,
                                                     "diversity_score": 0.5} for t, u in zip(TEXTS, urls)])
    cfg = make_config(tmp_path / "wh", [source], ingest={"text_columns": ["url"]}, quality={
        "method": "classifier", "max_tokens": 32,
        "classifier": {"path": str(checkpoints["regression"]), "range": [-1, 1], "input_template": "{url}\n\n{text}"}})
    for stage in ("ingest", "quality"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    table = store.read("quality").join(store.read("documents").select("doc_id", "text", "url"), "doc_id").toPandas()
    filled = [f"{url or ''}\n\n{text}" for url, text in zip(table["url"], table["text"])]
    classifier = TextClassifier(checkpoints["regression"], ClassifierSpec(value_range=(-1.0, 1.0)), 32, "cpu")
    expected = classifier.score(filled).expected
    np.testing.assert_allclose(table["quality_expected"], expected, rtol=1e-9)
    plain = classifier.score(table["text"].tolist())
    assert not np.allclose(plain.expected, expected)  # the url reached the model


@pytest.mark.parametrize("template, message", [
    ("{title}\n{text}", "field {title} is not a documents text column; available: text, url"),
    ("{url!r} {text}", "expected fields in braces"),
])
def test_an_input_template_naming_an_unknown_column_is_a_config_error(template, message):
    from samplemix_spark.config import build_config

    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config({"ingest": {"text_columns": ["url"]},
                      "quality": {"method": "classifier", "classifier": {"path": "x", "input_template": template}}})
