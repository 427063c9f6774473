"""Quality from a sequence classifier users already have on disk (FineWeb-Edu style), without Spark.

Runs wherever it is called: inside the classifier quality UDF on executors, and
in the GPU suite on a host with no Spark, so it imports torch and transformers
but never pyspark. A checkpoint folder is loaded with
``AutoModelForSequenceClassification`` through ``TextEncoder``, so texts are
tokenised, cut and batched in the same length buckets as the embed and
evaluator UDFs: a score never depends on its batch-mates, bf16 autocast on
CUDA, exact fp32 on CPU.

The output is mapped onto the paper's 0-10 scale:

- ``regression`` (one output): linear from ``value_range`` (FineWeb-Edu: [0, 5])
  onto [0, 10], clipped;
- ``classes``: the expected value of ``class_values`` under the softmax, each
  value matched to the checkpoint's ``id2label`` by name;
- a fastText model (``FastTextClassifier``, DCLM's quality filter): 10 x the
  probability of ``positive_label``.

NVIDIA's DeBERTa quality and domain classifiers are saved as a backbone plus an
``fc`` head in one weights file, with a config.json that is not a transformers
config, so ``AutoModelForSequenceClassification`` cannot load them. With a
``BackboneLayout`` the backbone is built from a local backbone folder's config
and tokenizer (``AutoModel``), its weights and the head's are read from the
checkpoint by key prefix, and the head is applied to the first token's hidden
state, as NVIDIA's model does (it applies ``fc`` to every token and keeps token
0; a linear head gives the same). Their model returns the softmax, so
``head: classes`` reads the same probabilities.

The integer q is the expected value rounded half up, as the paper's 0-10 integer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np
import torch

from samplemix_spark.errors import ConfigError

HEADS = ("regression", "classes")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# A folder holding any of these ships its own tokenizer (NeMo Curator's checkpoints do).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spm.model", "sentencepiece.bpe.model", "vocab.txt",
                   "vocab.json")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierSpec:
    """What the checkpoint's outputs mean (``quality.classifier`` without the path and format)."""

    head: str = "regression"
    value_range: tuple = (0.0, 5.0)
    class_values: dict = field(default_factory=dict)
    trust_remote_code: bool = False


@dataclass(frozen=True)
class BackboneLayout:
    """``format: backbone_head``: where the backbone's config and tokenizer are, and the checkpoint's key names."""

    backbone: str
    prefix: str = "model."
    head_key: str = "fc"


@dataclass
class TopLabels:
    """Each text's most probable class (the first on a tie) and its probability."""

    names: list
    confidence: np.ndarray  # float64

    @classmethod
    def of(cls, shares: np.ndarray, names: list[str]) -> "TopLabels":
        top = np.argmax(shares, axis=1) if len(shares) else np.zeros(0, dtype=int)
        return cls([names[i] for i in top], shares[np.arange(len(top)), top].astype(np.float64))


@dataclass
class Scores:
    quality: np.ndarray          # int32, 0..10
    expected: np.ndarray         # float64, 0..10
    probabilities: Optional[list]  # per text, the class probabilities in id order (classes head only)


def checkpoint_labels(folder: Path) -> dict[int, str]:
    """id -> label from the checkpoint's config.json (``id2label``)."""
    settings = json.loads((Path(folder) / "config.json").read_text())
    return {int(i): str(label) for i, label in settings.get("id2label", {}).items()}


def _file_version(*files: Path) -> str:
    digest = hashlib.sha256()
    for part in files:
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def check_fasttext(path: Path, positive_label: Optional[str], key: str = "quality.classifier") -> dict:
    """Refuse, in one line, a file that is not a fastText model or lacks ``positive_label`` (if given); driver side."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config key '{key}.path': {str(path)!r} is not a fastText model file (.bin)")
    try:
        labels = load_fasttext(path).get_labels()
    except ValueError as exc:
        raise ConfigError(f"config key '{key}.path': {str(path)!r} is not a fastText model ({exc})") from exc
    if positive_label is not None and positive_label not in labels:
        raise ConfigError(f"config key '{key}.positive_label': {positive_label!r} is not a label of the model; "
                          f"it has {', '.join(labels)}")
    return {"model_id": path.name, "model_version": _file_version(path)}


def load_fasttext(path: Path):
    try:
        import fasttext
    except ImportError as exc:
        raise ConfigError("quality.classifier.format 'fasttext' needs the fastText package: "
                          "pip install 'samplemix-spark[fasttext]' (fasttext-wheel)") from exc
    fasttext.FastText.eprint = lambda *args, **kwargs: None  # its load warning says nothing useful here
    return fasttext.load_model(str(path))


def first_chars(texts: list, cap: Optional[int]) -> list:
    """Each text cut to its first ``cap`` characters (code points, as Python and NeMo Curator slice)."""
    return texts if cap is None else [t[:cap] for t in texts]


def fasttext_line(text: str) -> str:
    """A text as DCLM's fastText enricher feeds it: ``" ".join(text.strip().splitlines())``."""
    return " ".join(text.strip().splitlines())


class FastTextClassifier:
    """A fastText supervised model: q = 10 x P(``positive_label``); probabilities in ``get_labels()`` order.

    Without a ``positive_label`` it only names top labels (``top_labels``), as a domain classifier.
    """

    def __init__(self, path: Path, positive_label: Optional[str] = None) -> None:
        self.model = load_fasttext(path)
        self.labels = self.model.get_labels()
        self.positive = self.labels.index(positive_label) if positive_label else None

    def top_labels(self, texts: list[str], batch_size: int = 32,
                   on_batch: Optional[Callable[[int], object]] = None) -> TopLabels:
        shares = np.stack([self.probabilities(t) for t in texts]) if texts else np.zeros((0, len(self.labels)))
        if on_batch is not None:
            on_batch(len(texts))
        names = [label.removeprefix("__label__") for label in self.labels]
        return TopLabels.of(shares, names)

    def probabilities(self, text: str) -> np.ndarray:
        # fastText reads one line. DCLM's enricher joins the stripped text's lines with spaces, so every line
        # break Python knows (\r, \x1c, \u2028, ...) becomes a space, as its scores were made. The binding is
        # called directly because the package's predict builds arrays in a way numpy 2 refuses.
        pairs = self.model.f.predict(fasttext_line(text) + "\n", -1, 0.0, "replace")
        found = {label: probability for probability, label in pairs}
        return np.array([min(1.0, found.get(label, 0.0)) for label in self.labels], dtype=np.float64)

    def score(self, texts: list[str], batch_size: int = 32,
              on_batch: Optional[Callable[[int], object]] = None) -> Scores:
        shares = [self.probabilities(t) for t in texts]
        expected = np.array([10.0 * s[self.positive] for s in shares], dtype=np.float64)
        if on_batch is not None:
            on_batch(len(texts))
        return Scores(np.floor(expected + 0.5).astype(np.int32), expected, shares)


def _weights_file(folder: Path) -> Optional[Path]:
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors or PyTorch weights file, by key."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def tokenizer_folder(folder: Path, layout: Optional[BackboneLayout]) -> Path:
    """Where a classifier's tokenizer is: the checkpoint folder when it ships one, else the backbone's."""
    folder = Path(folder)
    if layout is None or any((folder / name).is_file() for name in TOKENIZER_FILES):
        return folder
    return Path(layout.backbone)


def _check_tokenizer(folder: Path, key: str, trust_remote_code: bool) -> None:
    """Load the tokenizer once on the driver, so a missing file or package fails here and not on executors."""
    from transformers import AutoTokenizer

    if not any((Path(folder) / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"config key '{key}': no tokenizer loads from {str(folder)!r} (none of "
                          f"{', '.join(TOKENIZER_FILES)}); the checkpoint or its backbone folder must ship one")
    try:
        AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
    except (ImportError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        hint = ("; a SentencePiece tokenizer (DeBERTa-v3's spm.model) needs `pip install "
                "'samplemix-spark[deberta]'` (sentencepiece and protobuf)"
                if "sentencepiece" in str(exc).lower() or "protobuf" in str(exc).lower() else "")
        raise ConfigError(f"config key '{key}': no tokenizer loads from {str(folder)!r} ({first}){hint}") from None


def check_checkpoint(folder: Path, spec: Optional[ClassifierSpec], key: str = "quality.classifier",
                     layout: Optional[BackboneLayout] = None, trust_remote_code: bool = False) -> dict:
    """Refuse, in one line, a folder that is not a classifier checkpoint or does not match ``spec``
    (None: a domain classifier, which needs at least two named classes).

    Driver side, before any stage runs: the config, the head, for a ``layout``
    every backbone weight's name and shape, and the tokenizer, loaded once.
    Returns ``model_id`` (the folder's name) and ``model_version`` (a hash of
    the weights file and config.json, and of the backbone's config.json for a
    ``layout``).
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    weights = _weights_file(folder)
    if not config_file.is_file() or weights is None:
        raise ConfigError(f"config key '{key}.path': {str(folder)!r} is not a transformers checkpoint "
                          f"(expected config.json and one of {', '.join(WEIGHT_FILES)})")
    if layout is not None:
        _check_layout(folder, weights, layout, len(checkpoint_labels(folder)), key)
    labels = checkpoint_labels(folder)
    if spec is None and len(labels) < 2:
        raise ConfigError(f"config key '{key}.path': a domain classifier needs named classes; the checkpoint has "
                          f"{len(labels)} output(s)")
    trust = spec.trust_remote_code if spec is not None else trust_remote_code
    spec = spec or ClassifierSpec("classes", class_values=dict.fromkeys(labels.values(), 0.0))
    if spec.head == "regression" and len(labels) != 1:
        raise ConfigError(f"config key '{key}.head': 'regression' needs one output; the checkpoint has "
                          f"{len(labels)} ({', '.join(labels.values())}): use head 'classes' with class_values")
    if spec.head == "classes":
        named, given = set(labels.values()), set(spec.class_values)
        if named != given:
            raise ConfigError(f"config key '{key}.class_values': the checkpoint's labels are "
                              f"{', '.join(labels[i] for i in sorted(labels))}; class_values names "
                              f"{', '.join(sorted(given)) or 'none'}")
    tokenizer = tokenizer_folder(folder, layout)
    _check_tokenizer(tokenizer, f"{key}.{'path' if tokenizer == folder else 'backbone'}", trust)
    backbone = () if layout is None else (Path(layout.backbone) / "config.json",)
    return {"model_id": folder.resolve().name, "model_version": _file_version(weights, config_file, *backbone)}


def _config_field(folder: Path, name: str) -> Optional[str]:
    """One field of a folder's config.json (NVIDIA's ``base_model``, a saved ``_name_or_path``), when present."""
    try:
        return json.loads((folder / "config.json").read_text()).get(name) or None
    except (OSError, ValueError, AttributeError):
        return None


def _check_layout(folder: Path, weights: Path, layout: BackboneLayout, n_labels: int, key: str) -> None:
    """The head's key and size, and every backbone weight present under the prefix with the backbone config's
    shape; nothing is allocated."""
    tensors = read_weights(weights)
    head = tensors.get(f"{layout.head_key}.weight")
    if head is None:
        raise ConfigError(f"config key '{key}.head_key': {weights.name} has no {layout.head_key}.weight; its keys "
                          f"start with {', '.join(sorted({k.split('.')[0] for k in tensors}))}")
    if head.shape[0] != n_labels:
        raise ConfigError(f"config key '{key}.head_key': {layout.head_key} has {head.shape[0]} outputs; "
                          f"config.json names {n_labels} labels")
    with torch.device("meta"):
        backbone = _backbone(layout, key)
    expected = backbone.state_dict()
    base = _config_field(folder, "base_model")
    trained_on = f"; the checkpoint was trained on {base}" if base else ""
    missing = sorted(set(expected) - {k[len(layout.prefix):] for k in tensors if k.startswith(layout.prefix)})
    if missing:
        raise ConfigError(f"config key '{key}.backbone': the checkpoint lacks {len(missing)} of the backbone's "
                          f"{len(expected)} weights under {layout.prefix!r} (e.g. {missing[0]}): another "
                          f"architecture, or another backbone_prefix?{trained_on}")
    shapes = [(name, tuple(tensors[layout.prefix + name].shape), tuple(value.shape))
              for name, value in expected.items() if tuple(tensors[layout.prefix + name].shape) != tuple(value.shape)]
    if shapes:
        name, got, wanted = shapes[0]
        raise ConfigError(f"config key '{key}.backbone': {len(shapes)} of the checkpoint's backbone weights differ "
                          f"in shape from {layout.backbone!r}'s config (e.g. {name}: {got} against {wanted}): "
                          f"another backbone{trained_on}")
    named = _config_field(Path(layout.backbone), "_name_or_path")
    if base and named and Path(named).name != Path(base).name:
        log.warning("%s.backbone: %s was saved from %s, the checkpoint was trained on %s; the weights fit it", key,
                    layout.backbone, named, base)


def _backbone(layout: BackboneLayout, key: str = "quality.classifier") -> torch.nn.Module:
    """An untrained backbone of the configured architecture."""
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(layout.backbone, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config key '{key}.backbone': {layout.backbone!r} is not a transformers model folder "
                          f"({str(exc).splitlines()[0]})") from None
    return AutoModel.from_config(config)


class _BackboneWithHead(torch.nn.Module):
    """A backbone and a linear head on its first token, answering as a sequence classifier does (``.logits``)."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Linear) -> None:
        super().__init__()
        self.backbone, self.head, self.config = backbone, head, backbone.config

    def forward(self, **batch) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(self.backbone(**batch).last_hidden_state[:, 0]))


def load_backbone_head(folder: Path, layout: BackboneLayout) -> torch.nn.Module:
    """The backbone built from ``layout.backbone``'s config with the checkpoint's weights, and its head."""
    tensors = read_weights(_weights_file(Path(folder)))
    backbone = _backbone(layout)
    backbone.load_state_dict({k[len(layout.prefix):]: v for k, v in tensors.items() if k.startswith(layout.prefix)},
                             strict=False)  # every key was checked on the driver (check_checkpoint)
    weight = tensors[f"{layout.head_key}.weight"]
    head = torch.nn.Linear(weight.shape[1], weight.shape[0])
    head.load_state_dict({"weight": weight, "bias": tensors[f"{layout.head_key}.bias"]})
    return _BackboneWithHead(backbone, head)


class TextClassifier:
    """A loaded checkpoint: ``score(texts)`` -> ``Scores`` on the 0-10 scale."""

    def __init__(self, folder: Path, spec: ClassifierSpec, max_tokens: int = 512, device: str = "auto",
                 precision: str = "auto", layout: Optional[BackboneLayout] = None) -> None:
        from transformers import AutoModelForSequenceClassification

        from samplemix_spark.models.encoder import TextEncoder

        self.spec = spec
        if layout is None:
            self.encoder = TextEncoder(Path(folder), "cls", max_tokens, device, precision,
                                       model_class=AutoModelForSequenceClassification,
                                       trust_remote_code=spec.trust_remote_code)
        else:
            self.encoder = TextEncoder(tokenizer_folder(folder, layout), "cls", max_tokens, device, precision,
                                       model=load_backbone_head(folder, layout))
        labels = checkpoint_labels(folder)
        self.labels = [labels[i] for i in sorted(labels)]
        self.values = (torch.tensor([float(spec.class_values[labels[i]]) for i in sorted(labels)],
                                    dtype=torch.float64) if spec.head == "classes" else None)

    @torch.inference_mode()
    def logits(self, batch: dict) -> torch.Tensor:
        from samplemix_spark.models.encoder import autocast

        with autocast(self.encoder.device, self.encoder.precision):
            return self.encoder.model(**batch).logits.float()

    def score(self, texts: list[str], batch_size: int = 32,
              on_batch: Optional[Callable[[int], object]] = None) -> Scores:
        """Scores of ``texts`` in input order; ``on_batch(n)`` after each forward pass."""
        expected = np.zeros(len(texts), dtype=np.float64)
        probabilities: Optional[list] = [None] * len(texts) if self.values is not None else None
        for index, batch in self.encoder.batches(texts, batch_size):
            logits = self.logits(batch).cpu().double()
            if self.values is None:
                low, high = (float(v) for v in self.spec.value_range)
                expected[index] = ((logits[:, 0] - low) / (high - low) * 10.0).clamp(0.0, 10.0).numpy()
            else:
                shares = torch.softmax(logits, dim=-1)
                expected[index] = (shares @ self.values).numpy()
                for i, row in zip(index, shares.numpy()):
                    probabilities[i] = row
            if on_batch is not None:
                on_batch(len(index))
        return Scores(np.floor(expected + 0.5).astype(np.int32), expected, probabilities)

    def top_labels(self, texts: list[str], batch_size: int = 32,
                   on_batch: Optional[Callable[[int], object]] = None) -> TopLabels:
        """Each text's top class by ``id2label`` name and its softmax probability, in input order."""
        shares = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for index, batch in self.encoder.batches(texts, batch_size):
            shares[index] = torch.softmax(self.logits(batch).cpu().double(), dim=-1).numpy()
            if on_batch is not None:
                on_batch(len(index))
        return TopLabels.of(shares, self.labels)


def backbone_layout(settings, key: str = "quality.classifier") -> Optional[BackboneLayout]:
    """Where a ``backbone_head`` checkpoint's backbone and keys are (``settings``: a classifier config section)."""
    from samplemix_spark.models.paths import resolve_local_path

    if settings.format != "backbone_head":
        return None
    folder = resolve_local_path(settings.backbone, f"{key}.backbone")
    return BackboneLayout(str(folder), settings.backbone_prefix, settings.head_key)


def open_classifier(path: Path, settings, spec: ClassifierSpec, max_tokens: int, device: str, precision: str,
                    positive_label: Optional[str] = None,
                    key: str = "quality.classifier") -> "TextClassifier | FastTextClassifier":
    """The process-wide classifier for these settings (executor side): loaded once per Python process."""
    from samplemix_spark.models.cache import cached

    if settings.format == "fasttext":
        return cached(("fasttext", str(path), positive_label), lambda: FastTextClassifier(path, positive_label))
    layout = backbone_layout(settings, key)
    key = ("classifier", str(path), repr(spec), repr(layout), max_tokens, device, precision)
    return cached(key, lambda: TextClassifier(path, spec, max_tokens, device, precision, layout))


def portable_settings(settings):
    """A classifier config section with its paths as executors must read them (``pkg:`` kept, local absolute)."""
    import dataclasses

    from samplemix_spark.models.paths import portable_location

    backbone = settings.backbone and portable_location(settings.backbone)
    return dataclasses.replace(settings, path=portable_location(settings.path), backbone=backbone)
