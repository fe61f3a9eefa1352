"""The BLE gateway's disk (`ble_gateway/outbox.py`) on its own: what survives a restart, what is sent, what is kept.

The gateway's scenario tests (`test_ble_gateway.py`) restart a gateway over it; these state each table's contract
directly, so that a wrong column or condition fails here by name.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from ble_gateway.decode import Sequence
from ble_gateway.outbox import Outbox

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def reading(n: int) -> dict[str, object]:
    return {"_id": f"reading:d1-c{n}-water", "type": "reading", "value": n, "名": "水表"}


@pytest.fixture()
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "gw" / "gateway.sqlite3")
    yield box
    box.close()


def test_the_disk_is_made_where_asked_and_every_commit_is_durable(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "data" / "gateway" / "gateway.sqlite3")  # a data folder not made yet
    # WAL with synchronous=FULL: a committed packet survives a power cut (the module's promise).
    assert box.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert box.db.execute("PRAGMA synchronous").fetchone() == (2,)
    box.close()


def test_replay_guards_and_rule_state_survive_a_restart_exactly(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    box = Outbox(path)
    sealed = Sequence(41, True, T0)
    plain = Sequence(7, False, T0 + dt.timedelta(seconds=30))
    box.record([reading(1)], {"device:w1": ("2026-01-01T00:00:00Z", sealed), "device:m1": ("2026-02-01", plain)},
               {"episode:r1": {"open": True, "since": "2026-03-01"}}, T0)
    box.close()
    again = Outbox(path)
    assert again.sequences() == {"device:w1": ("2026-01-01T00:00:00Z", sealed), "device:m1": ("2026-02-01", plain)}
    assert again.state() == {"episode:r1": {"open": True, "since": "2026-03-01"}}
    # A later packet moves the guard forward; the other device's guard stays.
    again.record([], {"device:w1": ("2026-01-01T00:00:00Z", Sequence(42, True, T0))}, {}, T0)
    assert again.sequences()["device:w1"][1].number == 42 and again.sequences()["device:m1"][1] == plain
    again.close()


def test_a_packet_heard_twice_is_stored_once_and_counted_once(outbox: Outbox) -> None:
    assert outbox.record([reading(1), reading(2)], {}, {}, T0) == 2
    assert outbox.record([reading(2), reading(3)], {}, {}, T0) == 1
    assert [doc["_id"] for doc in outbox.pending(10)] == ["reading:d1-c1-water", "reading:d1-c2-water",
                                                          "reading:d1-c3-water"]
    assert outbox.pending(10)[0] == reading(1)  # the body as recorded, non-ASCII included


def test_pending_comes_oldest_first_within_its_limit_and_leaves_once_sent(outbox: Outbox) -> None:
    outbox.record([reading(9)], {}, {}, T0 + dt.timedelta(minutes=2))
    outbox.record([reading(5), reading(4)], {}, {}, T0)
    assert [doc["value"] for doc in outbox.pending(2)] == [4, 5]
    outbox.mark_sent(["reading:d1-c4-water", "reading:d1-c9-water"])
    assert [doc["value"] for doc in outbox.pending(10)] == [5]
    assert outbox.counts() == {"pending": 1, "sent": 2, "refused": 0}


def test_a_refused_document_is_kept_with_its_reason_and_never_offered_again(outbox: Outbox) -> None:
    outbox.record([reading(1), reading(2)], {}, {}, T0)
    outbox.mark_refused("reading:d1-c1-water", "x" * 600)
    assert [doc["value"] for doc in outbox.pending(10)] == [2]
    assert outbox.counts() == {"pending": 1, "sent": 0, "refused": 1}
    reason, attempts = outbox.db.execute(
        "SELECT reason, attempts FROM outbox WHERE doc_id = 'reading:d1-c1-water'").fetchone()
    assert (len(reason), attempts) == (500, 1)


def test_only_delivered_documents_older_than_the_limit_are_pruned(outbox: Outbox) -> None:
    outbox.record([reading(1)], {}, {}, T0)
    outbox.record([reading(2)], {}, {}, T0 + dt.timedelta(days=3))
    outbox.record([reading(3)], {}, {}, T0)
    outbox.mark_sent(["reading:d1-c1-water", "reading:d1-c2-water"])
    assert outbox.prune_sent(T0 + dt.timedelta(days=1)) == 1  # sent and old; the newer sent one and the pending stay
    assert outbox.counts() == {"pending": 1, "sent": 1, "refused": 0}


def test_a_failed_recording_leaves_nothing_half_written(outbox: Outbox) -> None:
    outbox.record([reading(1)], {"device:w1": ("r", Sequence(1, True, T0))}, {"k": {"n": 1}}, T0)
    # The documents go in first; the sequence row then breaks a constraint: the documents must go too.
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        outbox.record([reading(2)], {"device:w1": ("r", Sequence(2, True, T0)), "device:w2": (None, Sequence(
            1, True, T0))}, {"k": {"n": 2}}, T0)
    assert outbox.sequences() == {"device:w1": ("r", Sequence(1, True, T0))}
    assert outbox.state() == {"k": {"n": 1}}
    assert [doc["value"] for doc in outbox.pending(10)] == [1]
    assert outbox.record([reading(3)], {}, {}, T0) == 1  # and the disk takes the next packet


def test_the_last_known_configuration_starts_the_gateway_offline(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    box = Outbox(path)
    assert box.config() == ([], "0")  # never configured: the changes feed from the start
    box.save_config([{"_id": "device:w1", "type": "device"}, {"_id": "device:w2", "type": "device"}], "12-a")
    box.save_config([{"_id": "device:w2", "_deleted": True}, {"_id": "device:w1", "type": "device", "v": 2}], "15-b")
    box.close()
    again = Outbox(path)
    assert again.config() == ([{"_id": "device:w1", "type": "device", "v": 2}], "15-b")
    again.close()


def test_health_documents_stay_dirty_until_the_version_sent_is_the_version_held(outbox: Outbox) -> None:
    outbox.put_latest({"_id": "gateway_health:gw1", "battery": 90})
    assert outbox.dirty_latest() == [({"_id": "gateway_health:gw1", "battery": 90}, None)]
    outbox.latest_delivered("gateway_health:gw1", {"_id": "gateway_health:gw1", "battery": 90}, "1-a")
    assert outbox.dirty_latest() == []
    outbox.put_latest({"_id": "gateway_health:gw1", "battery": 80})
    # Delivered while it changed again: the revision is kept for the next update, and it stays dirty.
    outbox.latest_delivered("gateway_health:gw1", {"_id": "gateway_health:gw1", "battery": 90}, "2-b")
    assert outbox.dirty_latest() == [({"_id": "gateway_health:gw1", "battery": 80}, "2-b")]
