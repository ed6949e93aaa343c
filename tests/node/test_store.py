"""The SQLite block store: heights in order, tx index, snapshots, durability across reopen."""

from pathlib import Path

import pytest

from node.errors import CorruptBlockError, StorageError
from node.store import sqlite as sqlite_store
from node.store.sqlite import BlockStore, IndexedTx


def _save(store: BlockStore, height: int, txs: int = 2) -> None:
    store.save_block(
        meta=[("chain_state", b"state after %d" % height)],
        height=height,
        block_hash=bytes([height]) * 32,
        data=b"block%d" % height,
        commit_data=b"commit%d" % height,
        results=b"results",
        app_hash=b"\x01" * 32,
        time_ms=1000 * height,
        txs=[
            IndexedTx(bytes([height, i]) * 16, 0 if i == 0 else 3, "" if i == 0 else "bad")
            for i in range(txs)
        ],
    )


def test_blocks_and_txs_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path)
    for h in (1, 2, 3):
        _save(store, h)
    store.close()
    store = BlockStore(path)
    assert store.height == 3
    assert store.base_height() == 1
    block = store.block(2)
    assert block is not None
    assert block.data == b"block2"
    assert block.commit_data == b"commit2"
    assert store.block_by_hash(bytes([3]) * 32) == store.block(3)
    loc = store.tx(bytes([2, 1]) * 16)
    assert loc is not None
    assert (loc.height, loc.index, loc.code, loc.reason) == (2, 1, 3, "bad")
    assert store.tx(b"\x00" * 32) is None


def test_heights_must_not_skip(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "b.sqlite")
    _save(store, 1)
    with pytest.raises(StorageError, match="skip"):
        _save(store, 3)
    with pytest.raises(StorageError):
        _save(store, 1)  # duplicate height: the transaction rolls back
    assert store.height == 1


def test_blocks_range_respects_count_and_bytes(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "b.sqlite")
    for h in range(1, 11):
        _save(store, h)
    assert [b.height for b in store.blocks(4, 3, 1 << 20)] == [4, 5, 6]
    assert [b.height for b in store.blocks(4, 100, 1)] == [4]  # always at least one
    assert store.blocks(11, 10, 1 << 20) == []


def test_only_the_newest_snapshots_are_kept(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "b.sqlite")
    assert store.latest_snapshot() is None
    for h in (10, 20, 30):
        store.save_snapshot(h, b"state%d" % h)
    assert store.latest_snapshot() == (30, b"state30")
    count = store._db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
    assert count == 2


def test_block_bodies_live_in_the_side_file_and_an_uncommitted_tail_is_cut(
    tmp_path: Path,
) -> None:
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path)
    for h in (1, 2):
        _save(store, h)
    store.close()
    bodies = tmp_path / "blocks.dat"
    assert bodies.read_bytes() == b"block1block2"
    with bodies.open("ab") as f:  # a crash after the body's write, before its row's commit
        f.write(b"torn block3")
    store = BlockStore(path)
    assert bodies.stat().st_size == len(b"block1block2")
    _save(store, 3)
    block = store.block(3)
    assert block is not None
    assert block.data == b"block3"
    assert [b.data for b in store.blocks(1, 10, 1 << 20)] == [b"block1", b"block2", b"block3"]


# -- integrity (issue 13, attack 7: a flipped byte in the last body was served) -------------------


def _damaged_store(tmp_path: Path, heights: int, damage: str) -> Path:
    """A store with blocks 1..heights whose blocks.dat is then damaged at the tail."""
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path)
    for h in range(1, heights + 1):
        _save(store, h)
    store.close()
    bodies = tmp_path / "blocks.dat"
    raw = bytearray(bodies.read_bytes())
    match damage:
        case "flip":
            raw[-2] ^= 0x01  # inside the last body ("block5")
        case "truncate":
            del raw[-3:]  # the last body loses its last 3 bytes
    bodies.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_last_body_is_never_served(tmp_path: Path, damage: str) -> None:
    store = BlockStore(_damaged_store(tmp_path, 5, damage))  # opens: damage is not fatal
    with pytest.raises(CorruptBlockError, match="block 5") as info:
        store.block(5)
    assert info.value.height == 5
    with pytest.raises(CorruptBlockError):
        store.block_by_hash(bytes([5]) * 32)
    # Block sync's range read stops before it: the peer gets the intact prefix.
    assert [b.height for b in store.blocks(3, 10, 1 << 20)] == [3, 4]
    assert store.blocks(5, 10, 1 << 20) == []
    assert store.damaged() == [5]
    summary = store.summary(5)  # what /status shows needs no body
    assert summary is not None
    assert (summary.hash, summary.time_ms) == (bytes([5]) * 32, 5000)
    block = store.block(4)
    assert block is not None
    assert block.data == b"block4"


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_on_start_a_damaged_tail_is_rolled_back_for_block_sync(tmp_path: Path, damage: str) -> None:
    path = _damaged_store(tmp_path, 5, damage)
    store = BlockStore(path)
    assert store.verify_tail() == [5]
    assert store.recover_tail() == [5]
    # As if the node had stopped right after storing block 4: its node state is back.
    assert store.height == 4
    assert store.get_meta("chain_state") == b"state after 4"
    assert store.tx(bytes([5, 0]) * 16) is None
    assert store.verify_tail() == []
    assert (tmp_path / "blocks.dat").read_bytes() == b"block1block2block3block4"
    _save(store, 5)  # block sync stores it again
    store.close()
    store = BlockStore(path)
    assert store.recover_tail() == []
    block = store.block(5)
    assert block is not None
    assert block.data == b"block5"


def test_damage_in_the_middle_is_found_and_rolled_back_from_there(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path)
    for h in range(1, 9):
        _save(store, h)
    store.close()
    bodies = tmp_path / "blocks.dat"
    raw = bytearray(bodies.read_bytes())
    raw[len(b"block1block2") + 1] ^= 0x20  # inside block3
    bodies.write_bytes(bytes(raw))
    store = BlockStore(path)
    store.save_snapshot(5, b"app state at 5")
    # On start: the newest bodies, and those above the snapshot (recovery replays them)...
    assert store.verify_tail(heights_max=3) == []
    store.save_snapshot(2, b"app state at 2")
    store._db.execute("DELETE FROM snapshots WHERE height = 5")
    assert store.verify_tail(heights_max=3) == [3]
    assert store.verify_tail() == [3]
    assert store.recover_tail() == [3]
    assert store.height == 2
    assert store.get_meta("chain_state") == b"state after 2"


def test_damage_deeper_than_the_kept_node_state_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "META_HEIGHTS_KEPT", 8)  # 256 by default
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path)
    for h in range(1, sqlite_store.META_HEIGHTS_KEPT + 4):
        _save(store, h)
    store.close()
    (tmp_path / "blocks.dat").write_bytes(b"bl")  # every body is gone
    store = BlockStore(path)
    assert store.verify_tail()[0] == 1
    with pytest.raises(StorageError, match="resync"):
        store.rollback_to(1)
    # Everything gone: rolling back to nothing is allowed (resync from genesis).
    assert store.recover_tail()[0] == 1
    assert store.height == 0
    assert store.get_meta("chain_state") is None


def test_a_body_from_a_peer_repairs_the_damage_only_if_its_sha256_matches(tmp_path: Path) -> None:
    store = BlockStore(_damaged_store(tmp_path, 5, "flip"))
    with pytest.raises(CorruptBlockError):
        store.block(5)
    assert not store.repair_body(5, b"block5 forged")
    assert store.repair_body(5, b"block5")
    block = store.block(5)
    assert block is not None
    assert block.data == b"block5"
    assert store.damaged() == []
    assert store.verify_tail() == []


def test_a_store_written_before_checksums_opens_and_checks_lengths(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path)
    _save(store, 1)
    store._db.execute("ALTER TABLE blocks DROP COLUMN data_sha256")
    store.close()
    store = BlockStore(path)
    block = store.block(1)
    assert block is not None
    assert block.data == b"block1"
