"""The signing check (node/signing.py): a validator in the set that misses `window` commits in
a row, or sees no block for `stall_ms`, is reported once (then every `repeat_ms`); recovery is
reported once; a node outside the set is never told it is not signing."""

from consensus.app import VoteInfo
from node.signing import NotSigning, SigningAgain, SigningCheck

ME, OTHER = b"\x01" * 32, b"\x02" * 32


def commit(signed: bool) -> tuple[VoteInfo, ...]:
    return (VoteInfo(ME, 10, signed), VoteInfo(OTHER, 10, True))


def test_missed_commits_warn_once_then_recovery_is_said() -> None:
    check = SigningCheck(ME, window=3, stall_ms=10_000, repeat_ms=10_000)
    check.started(0, active=True)
    said = [check.block(commit(False), True, now_ms=t) for t in (100, 200, 300, 400)]
    assert said[:2] == [[], []]
    assert said[2] == [NotSigning("missed_commits", "3 commits in a row without our signature")]
    assert said[3] == []  # not repeated before repeat_ms
    assert check.missed_blocks == 4
    assert not check.signing(400)
    assert check.block(commit(True), True, now_ms=500) == [SigningAgain(0)]
    assert check.signing(500)


def test_no_block_for_stall_ms_is_no_quorum() -> None:
    check = SigningCheck(ME, window=3, stall_ms=5_000, repeat_ms=5_000)
    check.started(0, active=True)
    assert check.tick(4_999, peers=1) == []
    (notice,) = check.tick(5_000, peers=1)
    assert isinstance(notice, NotSigning)
    assert notice.reason == "no_quorum"
    assert "1 chain peers" in notice.detail
    assert check.tick(6_000, peers=1) == []
    assert check.tick(10_000, peers=1) != []  # repeated every repeat_ms while it lasts
    assert not check.signing(10_000)


def test_a_node_outside_the_set_is_not_warned() -> None:
    check = SigningCheck(ME, window=1, stall_ms=1_000, repeat_ms=1_000)
    check.started(0, active=False)
    assert check.block((VoteInfo(OTHER, 10, True),), False, now_ms=100) == []
    assert check.tick(60_000, peers=0) == []
    assert not check.signing(60_000)
