"""``diversity.encoder: static``: a model2vec model distilled offline from a transformer folder.

The transformer here is a tiny BERT with random weights and a WordPiece vocabulary
built from the corpus, so distillation takes a second. Embeddings written by the
embed stage, on the embedded engine and on JVM Spark, are compared with model2vec's
own ``StaticModel.encode`` of the same texts.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from samplemix_spark.config import load_config
from samplemix_spark.demo.synthetic import write_corpus
from samplemix_spark.errors import ConfigError
from samplemix_spark.models.static_encoder import (PROVENANCE, StaticEncoder, distill_static, folder_digest,
                                                   is_static_model, static_folder)

from .conftest import REPO
from .test_cli import samplemix
from .test_jvm_parity import JVM

MAX_TOKENS = 24
N_DOCS = 300


def tiny_bert(folder: Path, texts: list[str]) -> Path:
    """A one-layer BERT with random weights whose WordPiece vocabulary is the corpus's 400 commonest words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    counts = pd.Series(re.findall(r"\w+", " ".join(texts).lower())).value_counts()
    words = sorted(counts.index[:400])
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocabulary)}).save_pretrained(str(folder))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(str(folder))
    return folder


def direct_vectors(folder: Path, texts: list[str]) -> np.ndarray:
    """model2vec's own encoding, L2-normalised in float32 as every embedding the project stores."""
    from model2vec import StaticModel

    vectors = StaticModel.from_pretrained(str(folder)).encode(texts, max_length=MAX_TOKENS, normalize=False)
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("static")
    write_corpus(root / "data", N_DOCS, seed=5, n_files=3)
    texts = [json.loads(line)["text"] for path in sorted((root / "data").glob("*.jsonl"))
             for line in path.read_text().splitlines()]
    tiny_bert(root / "bert", texts)
    return root


def _overrides(root: Path, warehouse: Path) -> list[str]:
    return [f"ingest.sources=[{root}/data/*.jsonl]", f"tables.warehouse={warehouse}", "diversity.method=kmeans",
            "diversity.encoder=static", f"diversity.static.source={root}/bert", "diversity.static.pca_dims=16",
            f"diversity.max_tokens={MAX_TOKENS}", "diversity.niter=5"]


def _texts_by_id(documents: pd.DataFrame) -> tuple[list[str], list[str]]:
    documents = documents.sort_values("doc_id")
    return documents["doc_id"].tolist(), documents["text"].tolist()


def test_distillation_is_named_by_content_and_done_once(corpus, tmp_path, monkeypatch):
    target = static_folder(tmp_path / "encoders", corpus / "bert", 16)
    assert distill_static(corpus / "bert", target, 16, "the tiny bert") == target
    assert is_static_model(target) and not is_static_model(corpus / "bert")
    provenance = json.loads((target / PROVENANCE).read_text())
    assert provenance["source"] == "the tiny bert" and provenance["dim"] == 16
    assert provenance["source_digest"] == folder_digest(corpus / "bert")
    assert not list(target.parent.glob(".*.tmp"))

    copy = shutil.copytree(corpus / "bert", tmp_path / "elsewhere" / "bert-copy")
    assert static_folder(tmp_path / "encoders", copy, 16) == target  # content, not location
    (copy / "tokenizer_config.json").write_text((copy / "tokenizer_config.json").read_text() + "\n")
    assert static_folder(tmp_path / "encoders", copy, 16) != target

    import model2vec.distill

    monkeypatch.setattr(model2vec.distill, "distill", lambda **_: pytest.fail("distilled twice"))
    assert distill_static(corpus / "bert", target, 16) == target


def test_a_failed_distillation_leaves_nothing_behind(corpus, tmp_path, monkeypatch):
    import model2vec.distill

    def broken(**_):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model2vec.distill, "distill", broken)
    target = tmp_path / "encoders" / "static-16d-x"
    with pytest.raises(RuntimeError, match="out of memory"):
        distill_static(corpus / "bert", target, 16)
    assert list((tmp_path / "encoders").iterdir()) == []  # no model, no staging folder


def test_a_vector_does_not_depend_on_its_batch_mates(corpus, tmp_path):
    folder = distill_static(corpus / "bert", tmp_path / "static", 16)
    lines = (corpus / "data").glob("*.jsonl")
    texts = [json.loads(line)["text"][:length] for line in next(lines).read_text().splitlines()[:3]
             for length in (40, 400, 4000)]
    encoder = StaticEncoder(folder, MAX_TOKENS)
    together = encoder.embed(texts, batch_size=2, normalize=True)
    alone = np.stack([encoder.embed([t], normalize=True)[0] for t in texts])
    assert np.array_equal(together, alone)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-6)


def test_the_embed_stage_writes_model2vecs_vectors_on_the_embedded_engine(spark, corpus, tmp_path):
    from samplemix_spark.pipeline import run_stage

    cfg = load_config(REPO / "conf" / "synthetic.yaml", _overrides(corpus, tmp_path / "wh"))
    run_stage(spark, cfg, "ingest")
    run_stage(spark, cfg, "embed")

    folders = list((tmp_path / "encoders").iterdir())  # the default home: encoders/ beside the warehouse
    assert len(folders) == 1 and is_static_model(folders[0])
    ids, texts = _texts_by_id(DeltaTable(str(tmp_path / "wh" / "documents")).to_pandas())
    stored = DeltaTable(str(tmp_path / "wh" / "embeddings")).to_pandas().set_index("doc_id").loc[ids]
    assert len(stored) == N_DOCS
    np.testing.assert_array_equal(np.stack(stored["embedding"].to_numpy()), direct_vectors(folders[0], texts))


@pytest.mark.jvm
@pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")
def test_the_embed_stage_on_jvm_spark_uses_the_model_distill_encoder_made(corpus, tmp_path):
    settings = [*_overrides(corpus, tmp_path / "wh"), f"diversity.static.path={tmp_path}/enc"]
    sets = [f"--set={o}" for o in settings]
    made = samplemix("distill-encoder", "--config", str(REPO / "conf" / "synthetic.yaml"), *sets, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = Path(made.stdout.strip().splitlines()[-1])
    assert folder.parent == tmp_path / "enc" and is_static_model(folder)

    texts = [json.loads(line)["text"] for path in sorted((corpus / "data").glob("*.jsonl"))
             for line in path.read_text().splitlines()]
    ids = [f"doc{i:04d}" for i in range(len(texts))]
    (tmp_path / "wh" / "documents").mkdir(parents=True)
    pd.DataFrame({"doc_id": ids, "text": texts}).to_parquet(tmp_path / "wh" / "documents" / "part-0.parquet")
    result = samplemix("embed", "--config", str(REPO / "conf" / "synthetic.yaml"), *sets,
                       *(f"--set={o}" for o in JVM), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "engine: jvm-local" in result.stderr and "distilling" not in result.stderr  # found, not made again
    stored = pd.read_parquet(tmp_path / "wh" / "embeddings").set_index("doc_id").loc[ids]
    np.testing.assert_array_equal(np.stack(stored["embedding"].to_numpy()), direct_vectors(folder, texts))


def test_static_settings_are_checked_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="diversity.static.pca_dims"):
        load_config(None, ["diversity.static.pca_dims=0"])
    with pytest.raises(ConfigError, match="diversity.static.path"):
        load_config(None, ["diversity.static.path=s3://bucket/encoders"])
    from samplemix_spark.diversity.embed import check_encoder

    with pytest.raises(ConfigError, match="diversity.static.source"):
        check_encoder(load_config(None, ["diversity.encoder=static", f"diversity.static.source={tmp_path}/none"]))
    with pytest.raises(ConfigError, match="diversity.static.path"):
        check_encoder(load_config(None, ["diversity.encoder=static", "tables.warehouse=s3://bucket/wh"]))


def test_static_settings_change_the_embed_fingerprint_only_when_the_encoder_is_static():
    from samplemix_spark.pipeline import fingerprints

    def embed_fingerprint(*overrides: str) -> str:
        return fingerprints(load_config(None, list(overrides)), ["embed"])[0]

    assert embed_fingerprint() == embed_fingerprint("diversity.static.pca_dims=64")
    assert (embed_fingerprint("diversity.encoder=static")
            != embed_fingerprint("diversity.encoder=static", "diversity.static.pca_dims=64"))
