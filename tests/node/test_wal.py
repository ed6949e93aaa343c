"""The consensus WAL: replay after EndHeight, torn-tail repair, mid-file corruption halts."""

from pathlib import Path

import pytest

from node.errors import WalCorruptError
from node.wal import MAGIC, Wal, parse_end_height


def _fill(path: Path) -> None:
    wal = Wal(path)
    assert wal.open().pending == ()
    wal.append(b"h1-proposal")
    wal.append(b"h1-vote", sync=True)
    wal.end_height(1)
    wal.append(b"h2-proposal")
    wal.append(b"h2-prevote", sync=True)
    wal.close()


def test_reopen_returns_records_after_the_last_end_height(tmp_path: Path) -> None:
    path = tmp_path / "cs.wal"
    _fill(path)
    recovery = Wal(path).open()
    assert recovery.last_end_height == 1
    assert recovery.pending == (b"h2-proposal", b"h2-prevote")
    assert recovery.repaired_bytes == 0


@pytest.mark.parametrize("cut", [1, 3, 8, 9, 12])
def test_torn_tail_is_truncated_and_appends_continue(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cs.wal"
    _fill(path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    wal = Wal(path)
    recovery = wal.open()
    assert recovery.pending == (b"h2-proposal",)
    assert recovery.repaired_bytes > 0
    wal.append(b"after-repair")
    wal.close()
    assert Wal(path).open().pending == (b"h2-proposal", b"after-repair")


def test_bad_checksum_on_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "cs.wal"
    _fill(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert Wal(path).open().pending == (b"h2-proposal",)


def test_corruption_in_the_middle_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "cs.wal"
    _fill(path)
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + 8] ^= 0xFF  # first payload byte of the first record
    path.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match="offset 8"):
        Wal(path).open()


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cs.wal"
    path.write_bytes(b"not a wal at all, definitely")
    with pytest.raises(WalCorruptError, match="magic"):
        Wal(path).open()


def test_rotation_keeps_only_the_last_end_height(tmp_path: Path) -> None:
    path = tmp_path / "cs.wal"
    wal = Wal(path, rotate_bytes=200)
    wal.open()
    for height in range(1, 6):
        wal.append(b"x" * 100)
        wal.end_height(height)
    wal.append(b"pending")
    wal.close()
    assert path.stat().st_size < 200
    recovery = Wal(path).open()
    assert recovery.last_end_height == 5
    assert recovery.pending == (b"pending",)


@pytest.mark.parametrize("content", [None, b"", MAGIC])
def test_a_store_with_blocks_and_no_wal_refuses_to_start(
    tmp_path: Path, content: bytes | None
) -> None:
    # The WAL holds the double-sign guard: lost (deleted, truncated to 0, or just a header)
    # while the store has blocks, starting could sign twice.  Refuse, name the file, say what
    # to do, and leave nothing behind that would let a second start pass.
    path = tmp_path / "cs.wal"
    if content is not None:
        path.write_bytes(content)
    for _ in range(2):
        with pytest.raises(WalCorruptError, match=r"cs\.wal is missing or holds no record") as err:
            Wal(path).open(stored_height=12)
        assert "double-sign guard" in str(err.value)
        assert "Restore the file from a backup" in str(err.value)


def test_a_new_wal_starts_with_a_marker_so_a_later_start_finds_it(tmp_path: Path) -> None:
    path = tmp_path / "cs.wal"
    wal = Wal(path)
    wal.open(stored_height=0)
    wal.close()
    recovery = Wal(path).open(stored_height=3)  # blocks stored since: the log is still there
    assert recovery.pending == ()
    assert [parse_end_height(p) for p in recovery.records] == [0]
