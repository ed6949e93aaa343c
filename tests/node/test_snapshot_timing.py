"""When a validator snapshots its app: on the interval, later while an FL round holds updates."""

from node.consensus_shell import snapshot_now


def test_due_heights_snapshot_when_no_round_holds_updates() -> None:
    assert not snapshot_now(99, due=100, interval=100, fl_pending=0)
    assert snapshot_now(100, due=100, interval=100, fl_pending=0)
    assert snapshot_now(137, due=100, interval=100, fl_pending=0)  # late is fine


def test_a_full_round_defers_the_snapshot_for_at_most_one_interval() -> None:
    assert not snapshot_now(100, due=100, interval=100, fl_pending=330)
    assert not snapshot_now(199, due=100, interval=100, fl_pending=12)
    assert snapshot_now(200, due=100, interval=100, fl_pending=12)
    assert snapshot_now(141, due=100, interval=100, fl_pending=0)  # the round closed at 140
