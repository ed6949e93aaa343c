"""The metrics registry (node/metrics.py): labelled series render in the Prometheus text format,
stay bounded, and one committed height yields missed signatures, validator power, jailing and
FL outcomes."""

from dataclasses import dataclass
from typing import Any

from consensus.app import Event, FinalizeResult, TxResult, VoteInfo
from consensus.codec import encode
from consensus.driver.ports import Decided
from node.allocator import heap_stats
from node.metrics import LABELS_MAX, Family, NodeMetrics, reason_label

V0, V1 = b"\x01" * 32, b"\x02" * 32


def test_family_renders_sorted_escaped_and_bounded() -> None:
    family = Family("x_total", "help", "counter", ("reason",))
    family.inc('say "hi"')
    family.inc("a")
    assert family.render() == [
        "# HELP x_total help",
        "# TYPE x_total counter",
        'x_total{reason="a"} 1',
        'x_total{reason="say \\"hi\\""} 1',
    ]
    for i in range(LABELS_MAX * 2):
        family.inc(f"r{i}")
    assert len(family.values) == LABELS_MAX + 1
    assert family.get("other") > 0


def test_reason_label_is_short_and_stable() -> None:
    assert reason_label("round 3 already holds 5 commitments") == "round"
    assert reason_label("bad signature") == "bad_signature"
    assert reason_label("") == "unspecified"


@dataclass(frozen=True)
class _Info:
    time_ms: int
    last_commit: tuple[VoteInfo, ...]


@dataclass(frozen=True)
class _Block:
    txs: tuple[bytes, ...]


@dataclass(frozen=True)
class _Validator:
    public_key: bytes
    power: int


@dataclass(frozen=True)
class _Set:
    validators: tuple[_Validator, ...]


@dataclass(frozen=True)
class _Chain:
    validators: _Set


def decided(time_ms: int, events: tuple[Event, ...], txs: tuple[bytes, ...] = ()) -> Decided:
    results = tuple(TxResult(code=1, reason="round 4 is closed") for _ in txs)
    # Stand-ins with just the fields the metrics read, where the real ones need a whole chain.
    fields: dict[str, Any] = {
        "height": 1,
        "block": _Block(txs),
        "commit": None,
        "info": _Info(time_ms, (VoteInfo(V0, 10, True), VoteInfo(V1, 5, False))),
        "result": FinalizeResult(tx_results=results, events=events, app_hash=b""),
        "chain_after": _Chain(_Set((_Validator(V0, 10),))),
        "snapshot": None,
    }
    return Decided(**fields)


def test_a_committed_height_feeds_the_operator_series() -> None:
    m = NodeMetrics()
    m.describe("1.2.3", "chain-x", [(V0, "alice"), (V1, "bob")])
    reasons = "history_clip: clipped to 412 permille | near-copy"
    closed = Event(
        "fl_round_closed", (("round", "1"), ("flagged", "2"), ("flagged_reasons", reasons))
    )
    m.observe_block(decided(1_000, (closed, Event("fl_update_accepted"))))
    update = encode(["submit_update", b"s", 1, [], b"sig"])
    jailed = Event("validator_slashed", (("validator", V1.hex()), ("jailed_until", "9")))
    m.observe_block(decided(31_000, (closed, jailed), (update,)))
    text = m.render()
    k0, k1 = V0.hex()[:16], V1.hex()[:16]
    assert f'fedchain_validator_missed_signatures_total{{validator="{k1}",name="bob"}} 2' in text
    assert f'fedchain_validator_missed_signatures_total{{validator="{k0}",name="alice"}} 0' in text
    assert f'fedchain_validator_power{{validator="{k0}",name="alice"}} 10' in text
    assert f'fedchain_validator_power{{validator="{k1}",name="bob"}} 0' in text
    assert f'fedchain_validator_jailed{{validator="{k1}"}} 1' in text
    assert 'fedchain_fl_updates_total{outcome="accepted",reason=""} 1' in text
    assert 'fedchain_fl_updates_total{outcome="flagged",reason="history_clip/clipped_to"} 2' in text
    assert 'fedchain_fl_updates_total{outcome="flagged",reason="near_copy"} 2' in text
    assert 'fedchain_fl_updates_total{outcome="rejected",reason="round"} 1' in text
    assert "fedchain_fl_round_duration_seconds_sum 30" in text
    assert 'fedchain_build_info{version="1.2.3",chain_id="chain-x"} 1' in text
    assert "process_resident_memory_bytes " in text
    assert ("fedchain_heap_in_use_bytes " in text) == (heap_stats() is not None)


def test_mempool_refusals_by_reason() -> None:
    m = NodeMetrics()
    m.mempool_refused("full", "mempool full (10 transactions)")
    m.mempool_refused("check_tx", "bad signature")
    assert m.mempool_rejected.get("full") == 1
    assert m.mempool_rejected.get("check_tx_bad_signature") == 1
    assert m.txs_rejected.value == 1
