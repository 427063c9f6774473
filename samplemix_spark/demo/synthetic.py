"""A generated multi-domain corpus that carries precomputed q and d columns.

The text is pseudo-words, not language: this corpus exercises the pipeline
(ingest, token counting, mixing, report) with the ``column`` scoring method, and
gives tests and benchmarks a corpus of any size. Domains differ in length and
in their score distributions so that the mix visibly moves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class DomainProfile:
    share: float          # fraction of documents
    mean_words: float     # median length in words (log-normal)
    quality: tuple        # (mean, sd) of the 0..10 integer quality score
    diversity: tuple      # (mean, sd) of the diversity score


PROFILES: dict[str, DomainProfile] = {
    "web": DomainProfile(0.40, 120, (3.5, 2.0), (0.30, 0.10)),
    "news": DomainProfile(0.20, 250, (6.0, 1.5), (0.45, 0.10)),
    "encyclopedia": DomainProfile(0.15, 300, (7.5, 1.2), (0.55, 0.12)),
    "forum": DomainProfile(0.15, 80, (4.0, 2.0), (0.50, 0.15)),
    "code": DomainProfile(0.10, 200, (5.5, 1.8), (0.70, 0.10)),
}


def _vocabulary(rng: np.random.Generator, size: int = 3000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "an", "or", "el", "is", "um", "ba"]
    return ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(size)]


def generate(n_docs: int, seed: int = 7) -> Iterator[dict]:
    """Yield ``n_docs`` records with text, domain, quality_score and diversity_score."""
    rng = np.random.default_rng(seed)
    vocab = np.array(_vocabulary(rng))
    names = list(PROFILES)
    shares = np.array([PROFILES[name].share for name in names])
    domains = rng.choice(len(names), size=n_docs, p=shares / shares.sum())
    for i, index in enumerate(domains):
        profile = PROFILES[names[index]]
        n_words = max(5, int(rng.lognormal(np.log(profile.mean_words), 0.5)))
        words = " ".join(rng.choice(vocab, size=n_words))
        quality = int(np.clip(round(rng.normal(*profile.quality)), 0, 10))
        diversity = float(np.clip(rng.normal(*profile.diversity), 0.0, None))
        yield {"text": f"{names[index]} {i}. {words}.", "domain": names[index],
               "quality_score": quality, "diversity_score": diversity}


def write_corpus(out_dir: str | Path, n_docs: int, seed: int = 7, n_files: int = 4) -> list[Path]:
    """Write the corpus as ``n_files`` JSONL files; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"part-{k:03d}.jsonl" for k in range(n_files)]
    handles = [path.open("w") for path in paths]
    try:
        for i, record in enumerate(generate(n_docs, seed)):
            handles[i % n_files].write(json.dumps(record) + "\n")
    finally:
        for handle in handles:
            handle.close()
    return paths
