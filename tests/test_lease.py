"""One writer per warehouse: the lease is exclusive, expires, is taken over, and stops a lost holder's writes."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from samplemix_spark.demo.synthetic import write_corpus
from samplemix_spark.tables.lease import LeaseError, WriterLease
from samplemix_spark.tables.store import WRITE_GUARDS

from .conftest import REPO, make_config, store_for
from .test_cli import SAMPLEMIX, samplemix


def _lease(spark, tmp_path, holder: str, seconds: float = 60) -> WriterLease:
    return WriterLease(store_for(spark, make_config(tmp_path / "wh", [])), holder, seconds)


def test_a_second_writer_is_refused_with_the_holder_named_until_the_first_releases(spark, tmp_path):
    first, second = _lease(spark, tmp_path, "samplemix run"), _lease(spark, tmp_path, "samplemix tune")
    first.take()
    with pytest.raises(LeaseError, match=r"being written by `samplemix run` on host .* \(pid \d+\) since .*; its "
                                         r"lease expires at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"):
        second.take()
    first.release()
    second.take()
    assert second.read().token == second.token and second.read().holder == "samplemix tune"
    second.release()
    assert second.read().released


def test_of_writers_racing_for_a_free_lease_exactly_one_takes_it(spark, tmp_path):
    for trial in range(6):
        racers = [_lease(spark, tmp_path, f"racer {i}") for i in range(3)]
        start, outcomes = threading.Barrier(len(racers)), {}

        def race(lease: WriterLease) -> None:
            start.wait()
            try:
                lease.take()
                outcomes[lease.holder] = "took"
            except LeaseError:
                outcomes[lease.holder] = "refused"

        threads = [threading.Thread(target=race, args=(lease,)) for lease in racers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [lease for lease in racers if outcomes[lease.holder] == "took"]
        assert len(winners) == 1, (trial, outcomes)
        # The losers' commits were refused, not appended: every row (one per racing create) is the winner's.
        assert {row["token"] for row in winners[0].store.read("lease").collect()} == {winners[0].token}
        assert winners[0].read().token == winners[0].token
        winners[0].release()


def test_an_expired_lease_is_taken_over_and_its_old_holder_writes_nothing_more(spark, tmp_path, caplog):
    stalled = _lease(spark, tmp_path, "samplemix run", seconds=1)
    stalled.host = "another-host"  # a holder elsewhere: only its expiry frees the lease
    stalled.take()
    newcomer = _lease(spark, tmp_path, "samplemix run")
    with pytest.raises(LeaseError, match="another-host"):
        newcomer.take()
    time.sleep(1.5)
    with caplog.at_level("WARNING"):
        newcomer.take()
    assert "took over the writer lease of `samplemix run` on host another-host" in caplog.text
    assert "expired at" in caplog.text
    # The stalled holder wakes up: its renewal finds the new holder, and its next write is refused.
    WRITE_GUARDS[stalled.location] = stalled.check
    stalled.renew()
    store = stalled.store
    with pytest.raises(LeaseError, match="taken over by `samplemix run`.*not writing table 'weights'"):
        store.write(store.spark.range(3), "weights")
    assert not (tmp_path / "wh" / "weights").exists()
    assert newcomer.read().token == newcomer.token  # the renewal did not take it back
    WRITE_GUARDS.pop(stalled.location)
    newcomer.release()


def test_a_killed_holders_lease_on_this_host_is_taken_over_at_once(spark, tmp_path, caplog):
    killed = subprocess.Popen(["sleep", "60"])
    killed.kill()
    killed.wait()
    holder = _lease(spark, tmp_path, "samplemix run", seconds=600)
    holder.pid = killed.pid  # the row a `samplemix run` killed with SIGKILL leaves: unreleased, far from expiry
    holder.take()
    WRITE_GUARDS.pop(holder.location)
    newcomer = _lease(spark, tmp_path, "samplemix run")
    with caplog.at_level("WARNING"):
        newcomer.take()
    assert f"took over the writer lease of `samplemix run` on host {socket.gethostname()} (pid {killed.pid})" \
        in caplog.text and "its process is gone" in caplog.text
    assert newcomer.read().token == newcomer.token
    newcomer.release()


def test_the_heartbeat_keeps_a_short_lease_past_its_length(spark, tmp_path):
    holder = _lease(spark, tmp_path, "samplemix run", seconds=3)
    with holder:
        time.sleep(4.5)
        other = _lease(spark, tmp_path, "samplemix tune")
        with pytest.raises(LeaseError):
            other.take()
        assert holder.read().expires_at > time.time()
    other.take()
    other.release()


def _versions(warehouse: Path) -> dict[str, int]:
    return {path.name: DeltaTable(str(path)).version() for path in warehouse.iterdir()
            if (path / "_delta_log").is_dir()}


def _held_by_run(warehouse: Path) -> bool:
    if not (warehouse / "lease" / "_delta_log").is_dir():
        return False
    rows = DeltaTable(str(warehouse / "lease")).to_pandas()
    return bool(((rows["holder"] == "samplemix run") & ~rows["released"]).any())


def test_a_second_samplemix_run_stops_at_once_naming_the_first_and_writes_nothing(tmp_path):
    write_corpus(tmp_path / "data", 600, n_files=1)
    sets = [f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]", f"--set=tables.warehouse={tmp_path}/wh"]
    command = [*SAMPLEMIX, "run", "--config", str(REPO / "conf" / "synthetic.yaml"), *sets]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not _held_by_run(tmp_path / "wh") and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # the first run, alive and holding its lease, pauses mid-pipeline
        before = _versions(tmp_path / "wh")
        second = samplemix(*command[len(SAMPLEMIX):], cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        [line] = [text for text in second.stderr.splitlines() if "error" in text]
        assert f"being written by `samplemix run` on host {socket.gethostname()} (pid {first.pid})" in line
        assert "lease expires at" in line and "stage" not in second.stderr
        assert _versions(tmp_path / "wh") == before  # the second run wrote nothing, not even the lease
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert "pipeline done" in stderr and "writer lease released" in stderr
    assert not _held_by_run(tmp_path / "wh")


def test_a_parquet_warehouse_has_no_lease(spark, tmp_path):
    from samplemix_spark.tables.lease import writer_lease

    cfg = make_config(tmp_path / "wh", [], tables={"format": "parquet", "warehouse": str(tmp_path / "wh")})
    assert writer_lease(spark, cfg.tables, "samplemix run") is None


def test_the_lease_length_is_validated():
    with pytest.raises(Exception, match="tables.lease_seconds"):
        make_config(REPO / "unused", [], tables={"lease_seconds": 0})
