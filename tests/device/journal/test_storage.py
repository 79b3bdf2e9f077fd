"""The journal's append-only TinyDB storage on its own: TinyDB's table API against memory,
batches, a full disk, compaction. The only fake is the disk's write call (FlakyDisk)."""

from pathlib import Path

import pytest
from tinydb import TinyDB
from tinydb.storages import MemoryStorage
from tinydb.table import Document

from device.journal.line_format import Tables, encode_line, replay
from device.journal.storage import AppendLogStorage, open_log_db
from tests.support.journal_disk import FlakyDisk


def _stored(path: Path) -> Tables:
    """What a log file holds, read without the storage (no repairs, no side effects)."""
    return replay(path.read_bytes()).state


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_storage_reads_none_for_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    assert AppendLogStorage(tmp_path / "absent.log").read() is None
    assert list(tmp_path.iterdir()) == []


def _same_operations(db: TinyDB) -> None:
    """A tour of TinyDB's table API, each call a write the storage must get right."""
    people, other = db.table("people"), db.table("other")
    people.insert_multiple({"name": name, "n": n} for n, name in enumerate(["An", "Bình", "Chi"]))
    people.insert(Document({"name": "Dũng", "n": 9}, doc_id=10))
    people.update({"n": 5}, doc_ids=[2])
    people.update(lambda doc: doc.update(seen=True), lambda doc: doc["n"] > 4)
    people.upsert(Document({"n": 0, "new": 1}, doc_id=1))
    people.remove(lambda doc: doc["name"] == "Chi")
    people.remove(doc_ids=[99])  # not there: nothing to write
    other.insert({"x": [1, {"y": None}]})
    other.truncate()
    db.table("dropped").insert({"gone": True})
    db.drop_table("dropped")


def test_storage_after_tinydb_operations_reads_back_what_memory_holds(tmp_path: Path) -> None:
    in_memory = TinyDB(storage=MemoryStorage)
    _same_operations(in_memory)
    with open_log_db(tmp_path / "db.log") as on_disk:
        _same_operations(on_disk)
        assert on_disk.storage.read() == in_memory.storage.read()
    with open_log_db(tmp_path / "db.log") as reopened:
        assert reopened.storage.read() == in_memory.storage.read()


def test_storage_batch_is_one_line_and_a_failed_batch_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "db.log"
    with open_log_db(path) as db:
        storage = db.storage
        assert isinstance(storage, AppendLogStorage)
        with storage.batch():
            db.table("t").insert({"v": 1})
            db.table("meta").insert({"last": 1})
        assert len(_lines(path)) == 1
        with pytest.raises(RuntimeError), storage.batch():
            db.table("t").insert({"v": 2})
            raise RuntimeError("the caller gave up")
        assert db.table("t").all() == [{"v": 1}]
    assert _stored(path) == {"t": {"1": {"v": 1}}, "meta": {"1": {"last": 1}}}


def test_storage_failed_append_cuts_its_half_line_off(tmp_path: Path) -> None:
    disk = FlakyDisk()
    path = tmp_path / "db.log"
    with open_log_db(path, writer=disk.write) as db:
        db.table("t").insert({"v": 1})
        before = path.read_bytes()
        disk.full = True
        with pytest.raises(OSError, match="No space"):
            db.table("t").insert({"v": 2})
        assert path.read_bytes() == before
        assert db.table("t").all() == [{"v": 1}]  # memory forgot the failed write
        disk.full = False
        db.table("t").insert({"v": 3})
    assert list(_stored(path)["t"].values()) == [{"v": 1}, {"v": 3}]


def test_storage_compacts_the_log_into_its_live_state(tmp_path: Path) -> None:
    path = tmp_path / "db.log"
    with open_log_db(path, compact_ratio=2, compact_min_entries=10) as db:
        table = db.table("t")
        ids = [table.insert({"v": v}) for v in range(10)]
        assert len(_lines(path)) == 10  # 10 entries: not over the minimum
        table.remove(doc_ids=ids[:8])  # 18 entries for 2 live documents
        assert _lines(path) == [encode_line({"t": {"9": {"v": 8}, "10": {"v": 9}}})]
        table.insert({"v": 10})
        state = db.storage.read()
    assert len(_lines(path)) == 2
    assert _stored(path) == state == {"t": {"9": {"v": 8}, "10": {"v": 9}, "11": {"v": 10}}}


def test_storage_failed_compaction_keeps_the_log_and_the_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FlakyDisk()
    path = tmp_path / "db.log"
    with open_log_db(path, writer=disk.write, compact_ratio=1, compact_min_entries=2) as db:
        table = db.table("t")
        table.insert_multiple([{"v": 1}, {"v": 2}])
        disk.script = [True, False]  # the append fits, the compacted copy does not
        table.remove(doc_ids=[1])
        assert "could not compact" in caplog.text
        assert table.all() == [{"v": 2}]
    assert [p.name for p in tmp_path.iterdir()] == ["db.log"]  # no temp file left behind
    assert len(_lines(path)) == 2
    assert _stored(path) == {"t": {"2": {"v": 2}}}
