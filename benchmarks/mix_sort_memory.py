"""Peak memory of a mix worker ordering one output file: the key sort with a gather, against sorting the table.

    .venv/bin/python benchmarks/mix_sort_memory.py                 # one 256 MiB file (mixing.output_file_mb)
    .venv/bin/python benchmarks/mix_sort_memory.py --file-mb 64

Each way runs in its own process on the same synthetic partition (batches of 10,000 rows, as the engine
hands them over, 1 KiB of text per row) and reports the process's peak resident memory above what the
partition itself takes, and the time. ``gather`` is ``mixing.output._sort_partition``; ``whole table`` is
the sort it replaced: combine the batches, widen the strings, sort and take the whole table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

ROW_BYTES = 1024
BATCH_ROWS = 10_000


def partition(file_mb: int) -> list:
    """Batches of (doc_id, text, replica, _key) adding up to about ``file_mb`` MiB of text."""
    import numpy as np
    import pyarrow as pa

    rows = file_mb * 2**20 // ROW_BYTES
    rng = np.random.default_rng(0)
    batches = []
    for start in range(0, rows, BATCH_ROWS):
        n = min(BATCH_ROWS, rows - start)
        text = pa.StringArray.from_buffers(n, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * ROW_BYTES),
                                           pa.py_buffer(rng.integers(97, 123, n * ROW_BYTES, dtype=np.uint8)))
        batches.append(pa.record_batch({
            "doc_id": pa.array([f"doc-{start + i}" for i in range(n)]), "text": text,
            "replica": pa.array(rng.integers(0, 4, n), pa.int32()),
            "_key": pa.array(rng.integers(-2**63, 2**63 - 1, n), pa.int64())}))
    return batches


def whole_table(batches: list):
    import pyarrow as pa
    import pyarrow.compute as pc

    from samplemix_spark.mixing.output import _SORT_KEYS, _SORTED_BATCH_ROWS

    schema = batches[0].schema
    wide = pa.schema([field.with_type(pa.large_string()) if pa.types.is_string(field.type) else field
                      for field in schema])
    table = pa.Table.from_batches(batches).cast(wide).combine_chunks()
    order = pc.sort_indices(table, sort_keys=_SORT_KEYS)
    for start in range(0, len(order), _SORTED_BATCH_ROWS):
        yield from table.take(order.slice(start, _SORTED_BATCH_ROWS)).cast(schema).to_batches()


def measure(way: str, file_mb: int) -> dict:
    from samplemix_spark.mixing.output import _sort_partition

    batches = partition(file_mb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    ordered = _sort_partition(iter(batches)) if way == "gather" else whole_table(batches)
    rows = sum(batch.num_rows for batch in ordered)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"way": way, "rows": rows, "seconds": round(seconds, 2), "partition_mib": round(before / 1024),
            "peak_above_partition_mib": round((peak - before) / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-mb", type=int, default=256)
    parser.add_argument("--way", choices=["gather", "whole"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(measure(args.way, args.file_mb)))
        return
    for way in ("gather", "whole"):
        done = subprocess.run([sys.executable, __file__, "--file-mb", str(args.file_mb), "--way", way],
                              capture_output=True, text=True, check=True)
        print(done.stdout.strip())


if __name__ == "__main__":
    main()
