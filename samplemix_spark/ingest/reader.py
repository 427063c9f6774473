"""Read JSONL and Parquet sources identically on every engine (``mapInArrow``).

Engines' own readers disagree on real files: the embedded engine fails a whole
read on one malformed line, a byte-order mark, an escaped lone surrogate, an id
that is a number on some lines and a string on others, or a dictionary-encoded
Parquet column, and it decodes escaped code points above U+1FFFF one plane too
low, silently. So JSON and Parquet files are read here, by Python, on every
engine, and the same bytes give the same rows everywhere.

Driver side: ``list_units`` expands the sources into work units (a JSONL file,
or one row group of a Parquet file) and ``read_units`` builds a DataFrame with
one partition per unit, whose ``mapInArrow`` function carries the unit list and
the column mapping in its closure.

Executor side: ``read_unit`` opens a unit through a pyarrow filesystem
(decompressing ``.gz``, ``.bz2``, ``.zst``, ``.lz4``, ``.br`` by extension) and
maps each record onto ``RAW_SCHEMA``. Decoding follows the specifications, not
an engine:

- a UTF-8 byte-order mark at the start of a file is skipped; lines end at LF
  (a CR before it is dropped); blank lines are not records;
- an escaped surrogate pair gives the code point ``json.loads`` gives; an
  escaped lone surrogate becomes U+FFFD, since it cannot be written as UTF-8;
- a JSON number used as an id or domain becomes its JSON text (``7`` -> "7",
  ``7.0`` -> "7.0"), so ``7`` and ``"7"`` are the same id;
- a line that is not valid UTF-8 or not a JSON object is a row with
  ``parse_error`` set (``invalid_utf8``, ``malformed_json``) and the first 500
  characters of the line in ``raw``: it becomes a reject, never a failed job;
- Parquet string columns of any Arrow string type (dictionary, large, view) are
  strings; a binary text column is decoded as UTF-8, row by row.

A field the mapping names but a record lacks is null in that record (its row is
then rejected by the ordinary rules). Per-field flags let the driver tell a
column missing from every file, or of the wrong type everywhere, apart from a
few bad rows. A file that cannot be opened or decompressed, or that has lines
but no valid JSON record, fails the job with a message naming it (``FileError``).
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import pyarrow as pa

from samplemix_spark.errors import InputError
from samplemix_spark.tables.files import GLOB_CHARS, is_remote, require_sources
from samplemix_spark.tables.files import filesystem_for as _filesystem_for

RAW_CHARS = 500
BATCH_ROWS = 4096
# Bytes read from a stream at a time; lines are cut out of these chunks.
_CHUNK_BYTES = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(rb"\\[uU][dD][89abcdefABCDEF]")
# Marks a file-level error raised on an executor, so the driver can recover its one-line message.
FILE_ERROR_MARK = "samplemix-file-error:"

RAW_SCHEMA = pa.schema([
    ("source_file", pa.string()), ("source_line", pa.int64()),
    ("source_id", pa.string()), ("domain", pa.string()), ("text", pa.string()),
    ("q_input", pa.float64()), ("d_input", pa.float64()),
    ("parse_error", pa.string()), ("raw", pa.string()),
    # Per-record flags: the mapped field is present with a usable type / present with another type.
    ("has_text", pa.bool_()), ("bad_text", pa.bool_()), ("has_domain", pa.bool_()), ("has_id", pa.bool_()),
    ("has_q", pa.bool_()), ("bad_q", pa.bool_()), ("has_d", pa.bool_()), ("bad_d", pa.bool_()),
    ("fields", pa.string()),
    # ``ingest.score_columns``, in the configured order: values and the same two flags (null when none is set).
    ("extra", pa.list_(pa.float64())), ("has_extra", pa.list_(pa.bool_())), ("bad_extra", pa.list_(pa.bool_())),
    # ``ingest.text_columns``, in the configured order: values as labels are read, and whether each is present.
    ("labels", pa.list_(pa.string())), ("has_labels", pa.list_(pa.bool_())),
])
RAW_DDL = ("source_file string, source_line long, source_id string, domain string, text string, "
           "q_input double, d_input double, parse_error string, raw string, has_text boolean, bad_text boolean, "
           "has_domain boolean, has_id boolean, has_q boolean, bad_q boolean, has_d boolean, bad_d boolean, "
           "fields string, extra array<double>, has_extra array<boolean>, bad_extra array<boolean>, "
           "labels array<string>, has_labels array<boolean>")


class FileError(Exception):
    """A whole file cannot be read; its message names the file (raised on executors)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{FILE_ERROR_MARK} source file {path}: {problem}")


def file_error_message(exc: BaseException) -> Optional[str]:
    """The one-line message of a ``FileError`` raised on an executor, found in an engine's error text."""
    text = str(exc)
    start = text.find(FILE_ERROR_MARK)
    if start < 0:
        return None
    line = text[start + len(FILE_ERROR_MARK):].splitlines()[0]
    return line.strip().rstrip("\"'")


@dataclass(frozen=True)
class Mapping:
    """Dotted field paths of the mapped columns (None = not mapped)."""

    text: str
    domain: Optional[str]  # None: domains come from a classifier (``domain.method``)
    id: Optional[str] = None
    quality: Optional[str] = None
    diversity: Optional[str] = None
    scores: tuple = ()  # ``ingest.score_columns``
    labels: tuple = ()  # ``ingest.text_columns``

    def split(self) -> dict:
        """Each mapped field's path as a tuple of keys, split once per file rather than per record."""
        paths = {name: tuple(value.split(".")) if value else None for name, value in self.__dict__.items()
                 if name not in ("scores", "labels")}
        return {**paths, "scores": [tuple(name.split(".")) for name in self.scores],
                "labels": [tuple(name.split(".")) for name in self.labels]}


@dataclass(frozen=True)
class Unit:
    """A piece of work: a JSONL file, or one row group of a Parquet file."""

    path: str
    fmt: str
    row_group: int = -1


# ---------------------------------------------------------------- driver side: listing


def filesystem_for(path: str):
    """(pyarrow filesystem, path inside it) for an ingest source file."""
    return _filesystem_for(path, "ingest source")


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _data_files(filesystem, base: str, prefix: str) -> list[str]:
    """Files below ``base`` (recursive), without hidden and bookkeeping files such as _SUCCESS."""
    from pyarrow import fs

    infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    files = []
    for info in infos:
        relative = info.path[len(base):].lstrip("/")
        if info.type == fs.FileType.File and not any(_hidden(part) for part in relative.split("/")):
            files.append(prefix + info.path)
    return sorted(files)


def expand_source(source: str) -> list[str]:
    """The data files a source names: a file, a folder (recursively) or a glob; local or a URI."""
    from pyarrow import fs

    filesystem, path = filesystem_for(source)
    prefix = source[:source.index("://") + 3] if is_remote(source) else ""
    if GLOB_CHARS & set(path):
        pattern = path.rstrip("/").split("/")
        first_glob = next(i for i, part in enumerate(pattern) if GLOB_CHARS & set(part))
        base = "/".join(pattern[:first_glob]) or "/"
        if filesystem.get_file_info(base).type != fs.FileType.Directory:
            return []
        return [f for f in _data_files(filesystem, base, prefix) if _matches(f[len(prefix):], pattern)]
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [prefix + path]
    if info.type == fs.FileType.Directory:
        return _data_files(filesystem, path, prefix)
    return []


def _matches(path: str, pattern: list[str]) -> bool:
    """Component-wise glob match (``*`` stays inside one folder); a matched folder matches its files."""
    parts = path.split("/")
    return len(parts) >= len(pattern) and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pattern))


# Parquet footers read side by side when listing units: each is a round trip to storage (tens of ms on S3).
FOOTER_READERS = 32


def list_paths(sources: list[str]) -> list[str]:
    """Every data file of the sources, in a fixed order; an unmatched source is an error."""
    require_sources(sources)
    paths: list[str] = []
    for source in sources:
        files = expand_source(source)
        if not files:
            raise InputError(f"ingest source {source!r} matches no file")
        paths.extend(files)
    return paths


def list_units(sources: list[str], fmt: str) -> list[Unit]:
    """Every work unit of the sources, in a fixed order; an unmatched source is an error."""
    paths = list_paths(sources)
    if fmt != "parquet":
        return [Unit(path, fmt) for path in paths]
    with concurrent.futures.ThreadPoolExecutor(max_workers=FOOTER_READERS) as pool:
        return [unit for units in pool.map(_parquet_units, paths) for unit in units]


def _parquet_units(path: str) -> list[Unit]:
    """One unit per row group, so a large file is read by several tasks."""
    import pyarrow.parquet as pq

    filesystem, inner = filesystem_for(path)
    try:
        with filesystem.open_input_file(inner) as handle:
            n_groups = pq.ParquetFile(handle).num_row_groups
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"source file {path}: not a readable Parquet file ({_first_line(exc)})") from exc
    return [Unit(path, "parquet", group) for group in range(max(1, n_groups))]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


# ---------------------------------------------------------------- executor side: records


class _JsonNumber(str):
    """A JSON number kept as its literal text (``7.0`` stays "7.0")."""


_DECODER = json.JSONDecoder(parse_int=_JsonNumber, parse_float=_JsonNumber, parse_constant=_JsonNumber)


def _lookup(record: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    """(present, value) of a dotted field."""
    for part in path:
        if not isinstance(record, dict) or part not in record:
            return False, None
        record = record[part]
    return True, record


def _as_label(value: Any) -> Optional[str]:
    """An id or a domain as a string: numbers as their JSON text, booleans as ``true``/``false``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _label_value(values: dict, name: str, value: Any, escaped_surrogates: bool) -> Optional[str]:
    """A JSON label as a string; an array or object there is the row's ``invalid_<name>`` (and None)."""
    if isinstance(value, (list, dict)):
        values.setdefault("parse_error", f"invalid_{name}")
        return None
    return _clean(_as_label(value), escaped_surrogates)


def _label_field(values: dict, name: str, flag: str, present: bool, value: Any, escaped_surrogates: bool) -> None:
    """Set an id or domain field of a JSON record."""
    values[flag] = present
    values["source_id" if name == "id" else name] = _label_value(values, name, value, escaped_surrogates)


def _as_score(value: Any) -> tuple[Optional[float], bool]:
    """(score, wrong type): a JSON number as a float; null is (None, False); anything else is mistyped."""
    if isinstance(value, _JsonNumber):
        return float(value), False
    if value is None:
        return None, False
    return None, True


def _clean(value: Optional[str], escaped_surrogates: bool) -> Optional[str]:
    if escaped_surrogates and value is not None:
        return _SURROGATE.sub("\ufffd", value)
    return value


class _Rows:
    """Column buffers for RAW_SCHEMA, flushed as Arrow record batches."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.columns: dict[str, list] = {name: [] for name in RAW_SCHEMA.names}
        self.n_valid = 0
        self.n_rows = 0

    def __len__(self) -> int:
        return len(self.columns["source_line"])

    def add(self, line_no: int, **values: Any) -> None:
        for name, column in self.columns.items():
            column.append(values.get(name))
        self.columns["source_file"][-1] = self.path
        self.columns["source_line"][-1] = line_no
        self.n_rows += 1
        self.n_valid += values.get("parse_error") is None

    def flush(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_pydict(self.columns, schema=RAW_SCHEMA)
        self.columns = {name: [] for name in RAW_SCHEMA.names}
        return batch


def map_record(record: dict, paths: dict, escaped_surrogates: bool) -> dict:
    """The mapped values and flags of one parsed JSON record (``paths`` from ``Mapping.split``)."""
    has_text, text = _lookup(record, paths["text"])
    bad_text = has_text and text is not None and (not isinstance(text, str) or isinstance(text, _JsonNumber))
    values = {"text": None if bad_text else _clean(text, escaped_surrogates), "has_text": has_text and not bad_text,
              "bad_text": bad_text}
    if paths["domain"]:
        _label_field(values, "domain", "has_domain", *_lookup(record, paths["domain"]), escaped_surrogates)
    if paths["id"]:
        _label_field(values, "id", "has_id", *_lookup(record, paths["id"]), escaped_surrogates)
    for key, path, flag in (("q_input", paths["quality"], "q"), ("d_input", paths["diversity"], "d")):
        if path:
            present, raw = _lookup(record, path)
            score, mistyped = _as_score(raw)
            values.update({key: score, f"has_{flag}": present and not mistyped, f"bad_{flag}": mistyped})
    if paths["scores"]:
        found = [_lookup(record, path) for path in paths["scores"]]
        parsed = [_as_score(raw) for _, raw in found]
        values.update(extra=[score for score, _ in parsed],
                      has_extra=[present and not bad for (present, _), (_, bad) in zip(found, parsed)],
                      bad_extra=[bad for _, bad in parsed])
    if paths["labels"]:
        found = [_lookup(record, path) for path in paths["labels"]]
        values.update(labels=[_label_value(values, "_".join(path), value, escaped_surrogates)
                              for path, (_, value) in zip(paths["labels"], found)],
                      has_labels=[present for present, _ in found])
    return values


def _lines(stream, path: str) -> Iterator[bytes]:
    """The lines of a byte stream (LF-terminated, CR dropped), the first one without a BOM."""
    pending = b""
    first = True
    while True:
        try:
            chunk = stream.read(_CHUNK_BYTES)
        except (OSError, pa.ArrowException, EOFError) as exc:
            raise FileError(path, f"cannot be read or decompressed ({_first_line(exc)})") from exc
        if not chunk:
            break
        if first:
            chunk = chunk[len(_BOM):] if chunk.startswith(_BOM) else chunk
            first = False
        pieces = (pending + chunk).split(b"\n")
        pending = pieces.pop()
        for piece in pieces:
            yield piece[:-1] if piece.endswith(b"\r") else piece
    if pending:
        yield pending[:-1] if pending.endswith(b"\r") else pending


def _open_stream(path: str):
    filesystem, inner = filesystem_for(path)
    try:
        return filesystem.open_input_stream(inner, compression="detect")
    except (OSError, pa.ArrowException) as exc:
        raise FileError(path, f"cannot be opened ({_first_line(exc)})") from exc


def read_jsonl(path: str, mapping: Mapping) -> Iterator[pa.RecordBatch]:
    """Record batches of one JSONL file (plain or compressed)."""
    paths = mapping.split()
    rows = _Rows(path)
    with _open_stream(path) as stream:
        for line_no, line in enumerate(_lines(stream, path), start=1):
            if not line.strip():
                continue
            values = _parse_line(line, paths, report_fields=not rows.n_valid)
            rows.add(line_no, **values)
            if len(rows) >= BATCH_ROWS:
                yield rows.flush()
    if rows.n_rows and not rows.n_valid:
        raise FileError(path, f"none of its {rows.n_rows} lines is a JSON object (is it JSON Lines?)")
    if len(rows):
        yield rows.flush()


def _parse_line(line: bytes, paths: dict, report_fields: bool) -> dict:
    """Mapped values of one line; ``report_fields`` adds the record's top-level keys (for error messages)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return {"parse_error": "invalid_utf8", "raw": line.decode("utf-8", "replace")[:RAW_CHARS]}
    try:
        record = _DECODER.decode(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return {"parse_error": "malformed_json", "raw": _SURROGATE.sub("\ufffd", text[:RAW_CHARS])}
    values = map_record(record, paths, _ESCAPED_SURROGATE.search(line) is not None)
    if report_fields:
        values["fields"] = ",".join(record)
    return values


def read_parquet_group(path: str, row_group: int, mapping: Mapping) -> Iterator[pa.RecordBatch]:
    """Record batches of one Parquet row group, columns mapped by name."""
    import pyarrow.parquet as pq

    filesystem, inner = filesystem_for(path)
    try:
        with filesystem.open_input_file(inner) as handle:
            parquet = pq.ParquetFile(handle)
            wanted = _top_level(mapping, parquet.schema_arrow.names)
            if not parquet.num_row_groups:
                return
            table = parquet.read_row_group(row_group, columns=wanted)
            first_row = sum(parquet.metadata.row_group(i).num_rows for i in range(row_group))
    except (OSError, pa.ArrowException) as exc:
        raise FileError(path, f"cannot be read as Parquet ({_first_line(exc)})") from exc
    yield from _parquet_rows(table, path, mapping, first_row)


def _top_level(mapping: Mapping, names: list[str]) -> list[str]:
    mapped = [m for m in (mapping.text, mapping.domain, mapping.id, mapping.quality, mapping.diversity,
                          *mapping.scores, *mapping.labels) if m]
    return sorted({m.split(".")[0] for m in mapped} & set(names))


def _nested(table: pa.Table, dotted: Optional[str]) -> Optional[pa.Array]:
    """A possibly nested column of ``table`` as one array, or None when the file lacks it."""
    import pyarrow.compute as pc

    if not dotted:
        return None
    parts = dotted.split(".")
    if parts[0] not in table.column_names:
        return None
    column = table.column(parts[0]).combine_chunks()
    for part in parts[1:]:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(part) < 0:
            return None
        column = pc.struct_field(column, part)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column


def _is_string(data_type: pa.DataType) -> bool:
    return (pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
            or getattr(pa.types, "is_string_view", lambda _t: False)(data_type))


def _strings(column: pa.Array) -> list:
    return column.cast(pa.string()).to_pylist()


def _binary_text(column: pa.Array) -> tuple[list, list]:
    """UTF-8 decoded values and per-row decode errors of a binary column."""
    texts, errors = [], []
    for value in column.to_pylist():
        try:
            texts.append(None if value is None else value.decode("utf-8"))
            errors.append(None)
        except UnicodeDecodeError:
            texts.append(None)
            errors.append(value.decode("utf-8", "replace")[:RAW_CHARS])
    return texts, errors


def _parquet_labels(column: pa.Array, path: str, named: str) -> tuple[list, list]:
    """An id or domain column as strings, and which rows cannot be one (invalid UTF-8 in a binary column).

    Strings of any Arrow type are kept; integers and decimals become their text,
    booleans ``true``/``false`` (as in JSON), float64 values Python's shortest
    repr and float32 values the shortest repr that reads back as the same
    float32 (0.3, not 0.30000001192092896). Other types (lists, structs, maps,
    dates) cannot name a document or a domain: the file is refused with one line.
    """
    kind = column.type
    n = len(column)
    if pa.types.is_dictionary(kind):  # dictionary-encoded: label by the values it encodes
        return _parquet_labels(column.cast(kind.value_type), path, named)
    if _is_string(kind):
        return _strings(column), [False] * n
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        texts, raw = _binary_text(column)
        return texts, [r is not None for r in raw]
    if pa.types.is_boolean(kind):
        return [None if v is None else ("true" if v else "false") for v in column.to_pylist()], [False] * n
    if pa.types.is_floating(kind):
        import numpy as np

        shortest = str if kind.bit_width == 64 else (lambda v: str(np.float32(v)))
        return [None if v is None else shortest(v) for v in column.to_pylist()], [False] * n
    if pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return [None if v is None else str(v) for v in column.to_pylist()], [False] * n
    raise FileError(path, f"{named} holds {kind} values; an id, a domain or a text column must hold strings or "
                          "numbers")


def _numeric(column: Optional[pa.Array]) -> bool:
    return column is not None and (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                                   or pa.types.is_decimal(column.type))


def _parquet_scores(values: dict, table: pa.Table, names: tuple) -> None:
    """The ``extra`` lists of a row group: each score column as float64, flagged per file as present or mistyped."""
    n = table.num_rows
    columns = [_nested(table, name) for name in names]
    data = [c.cast(pa.float64()).to_pylist() if _numeric(c) else [None] * n for c in columns]
    values["extra"] = [list(row) for row in zip(*data)]
    values["has_extra"] = [[_numeric(c) for c in columns]] * n
    values["bad_extra"] = [[c is not None and not _numeric(c) for c in columns]] * n


def _parquet_text_columns(values: dict, table: pa.Table, path: str, names: tuple) -> None:
    """The ``labels`` lists of a row group, read as ids and domains are; invalid UTF-8 is ``invalid_<name>``."""
    n, columns, present, errors = table.num_rows, [], [], values["parse_error"]
    for dotted in names:
        column = _nested(table, dotted)
        present.append(column is not None)
        if column is None:
            columns.append([None] * n)
            continue
        labels, invalid = _parquet_labels(column, path, f"column {dotted!r} (ingest.text_columns)")
        columns.append(labels)
        name = dotted.replace(".", "_")
        errors = [error or (f"invalid_{name}" if bad else None) for error, bad in zip(errors, invalid)]
    values["parse_error"] = errors
    values["labels"] = [list(row) for row in zip(*columns)]
    values["has_labels"] = [present] * n


def _parquet_rows(table: pa.Table, path: str, mapping: Mapping, first_row: int) -> Iterator[pa.RecordBatch]:
    n = table.num_rows
    if n == 0:
        return
    none, false, true = [None] * n, [False] * n, [True] * n
    values: dict[str, list] = {name: none for name in RAW_SCHEMA.names}
    values["source_file"] = [path] * n
    values["source_line"] = list(range(first_row + 1, first_row + n + 1))
    text = _nested(table, mapping.text)
    values["has_text"], values["bad_text"] = false, false
    if text is not None and (_is_string(text.type) or pa.types.is_binary(text.type)
                             or pa.types.is_large_binary(text.type)):
        values["has_text"] = true
        if _is_string(text.type):
            values["text"] = _strings(text)
        else:
            values["text"], raw = _binary_text(text)
            values["parse_error"] = ["invalid_utf8" if r is not None else None for r in raw]
            values["raw"] = raw
    elif text is not None:
        values["bad_text"] = true
    for name, dotted, key in (("domain", mapping.domain, "domain_column"), ("id", mapping.id, "id_column")):
        column = _nested(table, dotted)
        values["has_id" if name == "id" else "has_domain"] = false if column is None else true
        if column is None:
            continue
        labels, invalid = _parquet_labels(column, path, f"column {dotted!r} (ingest.{key})")
        values["source_id" if name == "id" else name] = labels
        if any(invalid):
            values["parse_error"] = [error or (f"invalid_{name}" if bad else None)
                                     for error, bad in zip(values["parse_error"], invalid)]
    for name, dotted, flag in (("q_input", mapping.quality, "q"), ("d_input", mapping.diversity, "d")):
        column = _nested(table, dotted)
        numeric = _numeric(column)
        values[f"has_{flag}"] = true if numeric else false
        values[f"bad_{flag}"] = true if column is not None and not numeric else false
        if numeric:
            values[name] = column.cast(pa.float64()).to_pylist()
    if mapping.scores:
        _parquet_scores(values, table, mapping.scores)
    if mapping.labels:
        _parquet_text_columns(values, table, path, mapping.labels)
    values["fields"] = [",".join(table.column_names)] + none[1:]
    batch = pa.Table.from_pydict(values, schema=RAW_SCHEMA)
    yield from batch.to_batches(max_chunksize=BATCH_ROWS)


def read_unit(unit: Unit, mapping: Mapping) -> Iterator[pa.RecordBatch]:
    """Every row of one unit as RAW_SCHEMA record batches (executor side)."""
    if unit.fmt == "parquet":
        return read_parquet_group(unit.path, unit.row_group, mapping)
    return read_jsonl(unit.path, mapping)


# ---------------------------------------------------------------- driver side: the DataFrame


def read_units(spark, units: list[Unit], mapping: Mapping):
    """A DataFrame of RAW_SCHEMA rows over ``units``: one partition, and one task, per unit.

    The closure carries the unit list, the mapping and a progress counter of
    units read; each task looks its unit up by the partition's row id, so no
    file content passes through the driver.
    """
    from pyspark.sql import functions as F

    from samplemix_spark.engine.progress import Progress

    specs = [(u.path, u.fmt, u.row_group) for u in units]
    progress = Progress("ingest", len(units), unit="files" if all(u.fmt != "parquet" for u in units)
                        else "row groups")

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for unit_id in batch.column(0).to_pylist():
                yield from read_unit(Unit(*specs[unit_id]), mapping)
                progress.add(1)

    ids = spark.range(0, len(units), 1, max(1, len(units))).select(F.col("id").cast("int").alias("unit"))
    return ids.mapInArrow(run, RAW_DDL)
