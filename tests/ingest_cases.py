"""Input files of the kinds found in real data lakes, each with the result ingest must give.

Shared by the embedded-engine tests and a JVM-local subprocess (``python -m
tests.ingest_cases OUT_DIR CASE_ROOT``), so both engines ingest the same bytes
and their results can be compared with each other and with the expectation.
An expectation is either the documents (doc_id, domain, text) and the reject
reasons, or a fragment of the one-line error.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

ASTRAL = "Ext-B \U00020000 and \U0002a6d6, plane 14 \U000edeaf, emoji \U0001f600, BMP \u00e9\u4e2d."
GOOD = ["Rivers carry sediment from the mountains to the sea over many centuries.",
        "The committee published its annual report on regional water quality today.",
        "A compiler translates source code into machine instructions for a processor.",
        "Bread rises because yeast ferments sugars and releases carbon dioxide gas."]


def hashed(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _line(text, domain="d", **extra) -> bytes:
    return (json.dumps({"text": text, "domain": domain, **extra}) + "\n").encode()


@dataclass
class Case:
    write: Callable[[Path], None]
    documents: list = field(default_factory=list)  # (doc_id, domain, text)
    rejects: dict = field(default_factory=dict)  # reason -> count
    error: Optional[str] = None
    ingest: dict = field(default_factory=dict)
    source: str = "*"
    holdout: Optional[str] = None  # a file of the case's folder read as ingest.holdout_sources
    scores: dict = field(default_factory=dict)  # doc_id -> the score_columns then text_columns values kept
    # A catalog table read as one more source (``table:<catalog>.default.<name>``), made from the case
    # folder's ``table/`` Parquet files when there are any.
    table: Optional[str] = None
    files: bool = True  # whether ``source`` is a source too


def _bytes(name: str, data: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / name).write_bytes(data)
    return write


def _files(**named: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        for name, data in named.items():
            (folder / name.replace("__", ".")).write_bytes(data)
    return write


def _parquet(name: str, table: pa.Table) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        pq.write_table(table, folder / name)
    return write


def _write_compressed(path: Path, codec: str) -> None:
    with pa.output_stream(str(path), compression=codec) as out:
        out.write(GOOD_LINES)


def _docs(texts, domain="d"):
    return [(hashed(t), domain, t) for t in texts]


GOOD_LINES = b"".join(_line(t) for t in GOOD)
DELTA = ("Über thousands of years the river delta grew as floods carried silt from the highlands, and farmers "
         "learned to plant after each flood receded, building terraces, canals and small dams that still shape "
         "the valley today.")
# Upper case, tabs and a line break between words, the last three words changed: most 13-word shingles remain.
NEAR_DELTA = ("ÜBER thousands of years THE river delta\tgrew as floods carried silt from the highlands,\nand farmers "
              "learned to plant after each flood receded, building terraces, canals and small dams that nobody "
              "remembers now.")
FRESH = ("Glaciers store most of the planet's fresh water, and their slow retreat changes how much water reaches "
         "the rivers in late summer when crops need it most.")
MALFORMED = b'{"text": "cut off in the middle, "domain": \n'

CASES: dict[str, Case] = {
    "malformed_line": Case(_bytes("a.jsonl", _line(GOOD[0]) + MALFORMED + b"".join(_line(t) for t in GOOD[1:])),
                           _docs(GOOD), {"malformed_json": 1}),
    "byte_order_mark": Case(_bytes("a.jsonl", b"\xef\xbb\xbf" + GOOD_LINES), _docs(GOOD)),
    "crlf_and_blank_lines": Case(_bytes("a.jsonl", b"\r\n".join(_line(t).rstrip(b"\n") for t in GOOD)
                                        + b"\r\n\r\n   \n"), _docs(GOOD)),
    "lone_surrogate": Case(_bytes("a.jsonl", GOOD_LINES + b'{"text": "lone \\ud800 half", "domain": "d"}\n'),
                           _docs(GOOD + ["lone \ufffd half"])),
    "astral_escaped": Case(_bytes("a.jsonl", _line(ASTRAL) + GOOD_LINES), _docs([ASTRAL] + GOOD)),
    "astral_raw_utf8": Case(_bytes("a.jsonl", (json.dumps({"text": ASTRAL, "domain": "d"}, ensure_ascii=False)
                                               + "\n").encode() + GOOD_LINES), _docs([ASTRAL] + GOOD)),
    "invalid_utf8_line": Case(_bytes("a.jsonl", GOOD_LINES + b'{"text": "bad \xff\xfe bytes", "domain": "d"}\n'),
                              _docs(GOOD), {"invalid_utf8": 1}),
    "number_and_string_ids": Case(
        _bytes("a.jsonl", _line(GOOD[0], id=7) + _line(GOOD[1], id="7") + _line(GOOD[2], id=7.0)
               + _line(GOOD[3], id="x")),
        [("7", "d", min(GOOD[:2], key=lambda t: hashlib.sha256(t.encode()).hexdigest())),
         ("7.0", "d", GOOD[2]), ("x", "d", GOOD[3])], {"duplicate_id": 1}, ingest={"id_column": "id"}),
    "number_domain_nested": Case(
        _bytes("a.jsonl", b"".join((json.dumps({"text": t, "meta": {"set": i % 2}}) + "\n").encode()
                                   for i, t in enumerate(GOOD))),
        [(hashed(t), str(i % 2), t) for i, t in enumerate(GOOD)], ingest={"domain_column": "meta.set"}),
    "gzip": Case(_bytes("a.jsonl.gz", gzip.compress(GOOD_LINES)), _docs(GOOD)),
    "bzip2": Case(_bytes("a.jsonl.bz2", bz2.compress(GOOD_LINES)), _docs(GOOD)),
    "zstd": Case(lambda folder: _write_compressed(folder / "a.jsonl.zst", "zstd"), _docs(GOOD)),
    "schema_differs_between_files": Case(
        _files(a__jsonl=_line(GOOD[0], score=1.5) + _line(GOOD[1], score=2),
               b__jsonl=_line(GOOD[2]) + _line(GOOD[3], score="high")),
        _docs(GOOD[:2]), {"invalid_quality": 2}, ingest={"quality_column": "score", "max_reject_share": 1.0}),
    "no_json_at_all": Case(_files(a__jsonl=GOOD_LINES, b__jsonl=b"id,text\n1,hello\n2,world\n"),
                           error="b.jsonl: none of its 3 lines is a JSON object"),
    "corrupt_gzip": Case(_bytes("a.jsonl.gz", gzip.compress(GOOD_LINES)[:40]), error="a.jsonl.gz: cannot be read"),
    "mostly_rejected": Case(_bytes("a.jsonl", GOOD_LINES + b"".join(_line(t) for t in [""] * 5)),
                            error="likely the text column is blank in most records"),
    "missing_text_column": Case(_bytes("a.jsonl", GOOD_LINES), error="'ingest.text_column': column 'body' not found",
                                ingest={"text_column": "body"}),
    "parquet_dictionary": Case(_parquet("a.parquet", pa.table({
        "text": pa.array(GOOD).dictionary_encode(), "domain": pa.array(["d"] * 4).dictionary_encode()})),
        _docs(GOOD), ingest={"format": "parquet"}),
    "parquet_large_and_view_strings": Case(_parquet("a.parquet", pa.table({
        "text": pa.array(GOOD, pa.large_string()), "domain": pa.array(["d"] * 4, pa.string_view())})),
        _docs(GOOD), ingest={"format": "parquet"}),
    "parquet_binary_text": Case(_parquet("a.parquet", pa.table({
        "text": pa.array([t.encode() for t in GOOD] + [b"bad \xff bytes"], pa.binary()),
        "domain": ["d"] * 5})), _docs(GOOD), {"invalid_utf8": 1}, ingest={"format": "parquet"}),
    "holdout_near_duplicate": Case(
        _files(train__jsonl=GOOD_LINES + _line(DELTA),
               held__jsonl=_line(NEAR_DELTA) + _line(FRESH) + _line("Farmers learned to plant after each flood.")),
        _docs(GOOD + [DELTA]), {"holdout_near_duplicate": 1}, source="train.jsonl", holdout="held.jsonl"),
    "parquet_invalid_utf8_id_and_domain": Case(_parquet("a.parquet", pa.table({
        "text": GOOD + ["bad id bytes", "bad domain bytes"],
        "id": pa.array([b"a", b"b", b"c", b"d", b"\xff\xfe", b"f"], pa.binary()),
        "domain": pa.array([b"d"] * 5 + [b"bad \xc3"], pa.large_binary())})),
        [(i, "d", t) for i, t in zip("abcd", GOOD)], {"invalid_id": 1, "invalid_domain": 1},
        ingest={"format": "parquet", "id_column": "id", "max_reject_share": 1.0}),
    "parquet_float_and_integer_ids": Case(
        lambda folder: (pq.write_table(pa.table({"text": GOOD[:2], "domain": ["d"] * 2,
                                                 "id": pa.array([7.0, 1e20], pa.float64())}), folder / "a.parquet"),
                        pq.write_table(pa.table({"text": GOOD[2:3], "domain": ["d"],
                                                 "id": pa.array([0.3], pa.float32())}), folder / "b.parquet"),
                        pq.write_table(pa.table({"text": GOOD[3:], "domain": ["d"],
                                                 "id": pa.array([12], pa.int16())}), folder / "c.parquet")),
        [("7.0", "d", GOOD[0]), ("1e+20", "d", GOOD[1]), ("0.3", "d", GOOD[2]), ("12", "d", GOOD[3])],
        ingest={"format": "parquet", "id_column": "id"}),
    "parquet_list_id": Case(_parquet("a.parquet", pa.table({"text": GOOD, "domain": ["d"] * 4,
                                                            "id": [[1], [2], [3], [4]]})),
                            error="column 'id' (ingest.id_column) holds list<",
                            ingest={"format": "parquet", "id_column": "id"}),
    "json_array_and_object_labels": Case(
        _bytes("a.jsonl", b"".join(_line(t, id=f"i{n}") for n, t in enumerate(GOOD)) + _line("array id", id=[1, 2])
               + _line("object id", id={"a": 1}) + _line("array domain", domain=["d"], id="z")),
        [(f"i{n}", "d", t) for n, t in enumerate(GOOD)], {"invalid_id": 2, "invalid_domain": 1},
        ingest={"id_column": "id", "max_reject_share": 1.0}),
    "json_score_columns": Case(
        _bytes("a.jsonl", _line(GOOD[0], edu=3, meta={"dclm": 0.9}) + _line(GOOD[1], edu=2.5, meta={"dclm": 0.1})
               + _line(GOOD[2], edu="high", meta={"dclm": 0.5}) + _line(GOOD[3], edu=1)
               + b'{"text": "not a number", "domain": "d", "edu": NaN, "meta": {"dclm": 0.2}}\n'),
        _docs(GOOD[:2]), {"invalid_edu": 2, "invalid_meta.dclm": 1},
        ingest={"score_columns": ["edu", "meta.dclm"], "max_reject_share": 1.0},
        scores={hashed(GOOD[0]): (3.0, 0.9), hashed(GOOD[1]): (2.5, 0.1)}),
    "parquet_score_columns": Case(
        lambda folder: (pq.write_table(pa.table({"text": GOOD[:3], "domain": ["d"] * 3,
                                                 "edu": pa.array([3, 2, None], pa.int16()),
                                                 "dclm": pa.array([0.5, float("inf"), 0.25], pa.float32())}),
                                       folder / "a.parquet"),
                        pq.write_table(pa.table({"text": GOOD[3:], "domain": ["d"], "edu": ["high"],
                                                 "dclm": [0.75]}), folder / "b.parquet")),
        _docs(GOOD[:1]), {"invalid_dclm": 1, "invalid_edu": 2},
        ingest={"format": "parquet", "score_columns": ["edu", "dclm"], "max_reject_share": 1.0},
        scores={hashed(GOOD[0]): (3.0, 0.5)}),
    "json_text_columns": Case(
        _bytes("a.jsonl", _line(GOOD[0], url="https://a.example/x", meta={"title": "A"}) + _line(GOOD[1], url=7)
               + _line(GOOD[2], meta={"title": None}) + _line(GOOD[3], url=["x"], meta={"title": "B"})),
        _docs(GOOD[:3]), {"invalid_url": 1},
        ingest={"text_columns": ["url", "meta.title"], "max_reject_share": 1.0},
        scores={hashed(GOOD[0]): ("https://a.example/x", "A"), hashed(GOOD[1]): ("7", None),
                hashed(GOOD[2]): (None, None)}),
    "parquet_text_columns": Case(
        lambda folder: (pq.write_table(pa.table({"text": GOOD[:2], "domain": ["d"] * 2,
                                                 "url": pa.array([b"https://b.example", b"\xff\xfe"], pa.binary()),
                                                 "rank": pa.array([12, None], pa.int32())}), folder / "a.parquet"),
                        pq.write_table(pa.table({"text": GOOD[2:], "domain": ["d"] * 2,
                                                 "url": ["https://c.example", None]}), folder / "b.parquet")),
        _docs([GOOD[0], *GOOD[2:]]), {"invalid_url": 1},
        ingest={"format": "parquet", "text_columns": ["url", "rank"], "max_reject_share": 1.0},
        scores={hashed(GOOD[0]): ("https://b.example", "12"), hashed(GOOD[2]): ("https://c.example", None),
                hashed(GOOD[3]): (None, None)}),
    "parquet_struct_text_column": Case(_parquet("a.parquet", pa.table({"text": GOOD, "domain": ["d"] * 4,
                                                                       "url": [{"host": "h"}] * 4})),
                                       error="column 'url' (ingest.text_columns) holds struct<",
                                       ingest={"format": "parquet", "text_columns": ["url"]}),
    "text_column_missing": Case(_bytes("a.jsonl", GOOD_LINES), error="'ingest.text_columns': column 'url' not found",
                                ingest={"text_columns": ["url"]}),
    "score_column_missing": Case(_bytes("a.jsonl", GOOD_LINES), error="'ingest.score_columns': column 'edu' not found",
                                 ingest={"score_columns": ["edu"]}),
    "catalog_table_and_files": Case(
        lambda folder: (_bytes("a.jsonl", b"".join(_line(t) for t in GOOD[:2]))(folder),
                        (folder / "table").mkdir(exist_ok=True),
                        pq.write_table(pa.table({"text": [*GOOD[2:], None], "domain": ["d"] * 3}),
                                       folder / "table" / "part-0.parquet")),
        _docs(GOOD), {"null_text": 1}, source="a.jsonl", table="lake_docs", ingest={"max_reject_share": 1.0}),
    "catalog_table_missing": Case(lambda folder: None, error="no_such_docs': no such table in the engine's catalog",
                                  table="no_such_docs", files=False),
    "parquet_schema_differs": Case(
        lambda folder: (pq.write_table(pa.table({"text": GOOD[:2], "domain": ["d"] * 2, "q": [1.0, 2.0]}),
                                       folder / "a.parquet"),
                        pq.write_table(pa.table({"domain": ["d"] * 2, "text": GOOD[2:]}), folder / "b.parquet")),
        _docs(GOOD[:2]), {"invalid_quality": 2}, ingest={"format": "parquet", "quality_column": "q",
                                                         "max_reject_share": 1.0}),
}


def write_cases(root: Path) -> None:
    for name, case in CASES.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        case.write(folder)


def case_config(name: str, root: Path, warehouse: Path, engine: dict, table_format: str, catalog: str = ""):
    from samplemix_spark.config import build_config

    case = CASES[name]
    held = {"holdout_sources": [str(root / name / case.holdout)]} if case.holdout else {}
    sources = [str(root / name / case.source)] if case.files else []
    sources += [f"table:{catalog}.default.{case.table}"] if case.table else []
    return build_config({"engine": engine, "tables": {"format": table_format, "warehouse": str(warehouse)},
                         "ingest": {"sources": sources, **held, **case.ingest},
                         "quality": {"method": "heuristic"}})


def register_table(spark, name: str, root: Path) -> str:
    """Register the case's ``table/`` folder (if any) as a Parquet catalog table; returns the session's catalog."""
    case = CASES[name]
    catalog = spark.sql("SELECT current_catalog()").first()[0]
    if case.table and (root / name / "table").is_dir():
        spark.sql(f"DROP TABLE IF EXISTS default.{case.table}")
        spark.sql(f"CREATE TABLE default.{case.table} USING parquet LOCATION '{root / name / 'table'}'")
    return catalog


def ingest_case(spark, name: str, root: Path, warehouse: Path, engine: dict, table_format: str) -> dict:
    """Run ingest on one case: its documents and rejects, or its error message."""
    from samplemix_spark.errors import SampleMixError
    from samplemix_spark.ingest import IngestStep
    from samplemix_spark.tables import TableStore

    catalog = register_table(spark, name, root)
    cfg = case_config(name, root, warehouse / name, engine, table_format, catalog)
    store = TableStore(spark, cfg.tables)
    try:
        IngestStep(cfg).run(spark, store)
    except SampleMixError as exc:
        return {"error": str(exc).replace(f"table:{catalog}.", "table:"), "written": (warehouse / name).exists()}
    from samplemix_spark.config import score_column_name

    extra = [score_column_name(name) for name in (*cfg.ingest.score_columns, *cfg.ingest.text_columns)]
    documents = store.read("documents").select("doc_id", "domain", "text", "n_tokens", *extra).toPandas()
    rejects = store.read("rejects").toPandas()
    # The engines' catalogs have different names; the rest of a table source is the same.
    rejects["source_file"] = rejects["source_file"].map(
        lambda p: p.replace(f"table:{catalog}.", "table:") if p and p.startswith("table:") else Path(p).name if p
        else None)
    # A table row has no line number: keep it None, not pandas' NaN, which never equals itself.
    rejects["source_line"] = rejects["source_line"].astype(object).map(
        lambda v: None if v is None or v != v else int(v))
    overlap = store.read_if_exists("holdout_overlap")
    return {"holdout": sorted(store.read("holdout").toPandas()["doc_id"]),
            "overlap": [] if overlap is None else sorted(map(list, overlap.select(
                "doc_id", "shingles", "shared").toPandas().itertuples(index=False))),
            "documents": sorted(map(list, documents.itertuples(index=False))),
            "rejects": sorted(map(list, rejects[["reason", "doc_id", "domain", "text", "source_file",
                                                 "source_line"]].itertuples(index=False)), key=repr)}


def main(out: str, root: str) -> None:
    """Ingest every case on classic JVM local Spark (Parquet tables) and dump the results as JSON."""
    from samplemix_spark.config import EngineConfig
    from samplemix_spark.engine import build_session

    engine = {"kind": "jvm-local", "master": "local[2]",
              "spark_conf": {"spark.sql.shuffle.partitions": 3, "spark.driver.memory": "2g",
                             "spark.sql.warehouse.dir": str(Path(out) / "catalog")}}
    spark = build_session(EngineConfig(**engine))
    results = {name: ingest_case(spark, name, Path(root), Path(out) / "wh", engine, "parquet") for name in CASES}
    Path(out, "results.json").write_text(json.dumps(results, default=str))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
