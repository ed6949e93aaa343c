"""The SQLite block store: heights in order, tx index, snapshots, durability across reopen."""

from pathlib import Path

import pytest

from node.errors import StorageError
from node.store.sqlite import BlockStore, IndexedTx


def _save(store: BlockStore, height: int, txs: int = 2) -> None:
    store.save_block(
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


def test_a_body_file_shorter_than_the_store_says_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path)
    _save(store, 1)
    store.close()
    (tmp_path / "blocks.dat").write_bytes(b"blo")
    with pytest.raises(StorageError, match="lost"):
        BlockStore(path)
