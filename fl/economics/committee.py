"""The evaluation committee: validators score a round's updates off chain, the chain takes the
stake-weighted median (after Bittensor's Yuma consensus).

Theory of operation.  With `committee_blocks` = 0 (the default) a round is settled in the block
that closes it, judged by the on-chain agreement score (scoring.py).  With `committee_blocks`
= W > 0 the closed round waits as an `UnsettledRound`: in blocks close+1 ... close+W each active
validator (admitted, unjailed, with voting power) may send one `eval_scores` transaction

    eval_scores  [round, [[client, score permille], ...]]

scoring the round's updates on its own held-out data (a later one replaces its earlier one).
At the end of block close+W the round is settled: each client's committee score is the median
of the validators' scores weighted by their bonded stake at that moment (lower weighted median:
the smallest score at which the cumulative weight reaches half the total, ties by validator key),
so validators holding less than half the scoring stake cannot move it; clients nobody scored
keep their on-chain agreement score.  The committee score then takes the agreement score's
place in clients.settle_round (one round's suspicion feeding the cross-round evidence that
alone may slash; rewards by rule score).

Validators are paid for scoring in consensus, as Yuma's validator dividends are: the round's
`committee_reward_pool` (from the reserve, liquid) is split by stake * consensus, where a
validator's consensus is 1000 minus its mean absolute distance from the committee scores over
the clients it scored (floored at 0).  A validator that lies earns little or nothing.
"""

from dataclasses import dataclass, field

from consensus.app import Event
from consensus.codec import (
    Value,
    expect_bytes,
    expect_int,
    expect_list,
    expect_seq,
    expect_str,
)
from consensus.crypto import HASH_BYTES, PUBLIC_KEY_BYTES
from consensus.errors import CodecError
from fl.economics.clients import RoundVerdict, settle_round
from fl.economics.state import EconState
from fl.economics.validators import power_of
from fl.errors import RejectedError

KIND = "eval_scores"
SCORES_MAX = 100_000  # clients per round, validators per round: both far below this


@dataclass(slots=True)
class UnsettledRound:
    round: int
    close_height: int
    verdicts: tuple[RoundVerdict, ...]  # sorted by client; agreement = the on-chain score
    scores: dict[bytes, dict[bytes, int]] = field(default_factory=dict)  # validator -> client

    def encode(self) -> Value:
        return [
            self.round,
            self.close_height,
            [[v.client, v.score, v.agreement, v.flag, v.tx_hash] for v in self.verdicts],
            [
                [val, [[c, self.scores[val][c]] for c in sorted(self.scores[val])]]
                for val in sorted(self.scores)
            ],
        ]

    @classmethod
    def decode(cls, value: Value) -> "UnsettledRound":
        rnd, close, verdicts_v, scores_v = expect_list(value, 4, "unsettled round")
        verdicts = []
        for item in expect_seq(verdicts_v, "verdicts", SCORES_MAX):
            client, score, agreement, flag, tx_hash = expect_list(item, 5, "verdict")
            verdicts.append(
                RoundVerdict(
                    expect_bytes(client, "client", PUBLIC_KEY_BYTES),
                    expect_int(score, "score", 0, 1000),
                    expect_int(agreement, "agreement", 0, 1000),
                    expect_str(flag, "flag", 1024),
                    expect_bytes(tx_hash, "tx hash", size_max=HASH_BYTES),
                )
            )
        unsettled = cls(
            expect_int(rnd, "round", 0), expect_int(close, "close height", 0), tuple(verdicts)
        )
        for item in expect_seq(scores_v, "committee scores", SCORES_MAX):
            validator, pairs = expect_list(item, 2, "validator scores")
            unsettled.scores[expect_bytes(validator, "validator", PUBLIC_KEY_BYTES)] = _pairs(pairs)
        return unsettled


def _pairs(value: Value) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for item in expect_seq(value, "scores", SCORES_MAX):
        client, score = expect_list(item, 2, "score")
        key = expect_bytes(client, "scored client", PUBLIC_KEY_BYTES)
        if key in out:
            raise CodecError("a client is scored twice")
        out[key] = expect_int(score, "score", 0, 1000)
    return out


def defer(econ: EconState, fl_round: int, height: int, verdicts: list[RoundVerdict]) -> None:
    econ.unsettled.append(
        UnsettledRound(fl_round, height, tuple(sorted(verdicts, key=lambda v: v.client)))
    )


def execute(econ: EconState, sender: bytes, body: Value, height: int, apply: bool) -> Event:
    try:
        rnd_v, pairs_v = expect_list(body, 2, KIND)
        fl_round = expect_int(rnd_v, "round", 0)
        scores = _pairs(pairs_v)
    except CodecError as exc:
        raise RejectedError(f"malformed {KIND}: {exc}") from None
    if power_of(econ, sender) == 0:
        raise RejectedError("only an active validator may score updates")
    target = next((u for u in econ.unsettled if u.round == fl_round), None)
    if target is None:
        raise RejectedError(f"round {fl_round} is not awaiting committee scores")
    if height > target.close_height + econ.params.committee_blocks:
        raise RejectedError(f"scoring of round {fl_round} has ended")
    participants = {v.client for v in target.verdicts}
    stray = sorted(set(scores) - participants)
    if stray:
        raise RejectedError(f"{stray[0].hex()[:16]} has no update in round {fl_round}")
    if apply:
        target.scores[sender] = scores
    return Event(
        "committee_scores",
        (("round", str(fl_round)), ("validator", sender.hex()), ("scored", str(len(scores)))),
    )


def weighted_median(entries: list[tuple[int, int, bytes]]) -> int:
    """Lower weighted median of (score, weight, tie-break key) entries with positive weights."""
    ordered = sorted(entries, key=lambda e: (e[0], e[2]))
    total = sum(w for _, w, _ in ordered)
    running = 0
    for score, weight, _ in ordered:
        running += weight
        if 2 * running >= total:
            return score
    raise ValueError("weighted median of no weight")


def settle_due(econ: EconState, height: int) -> list[Event]:
    due = [u for u in econ.unsettled if u.close_height + econ.params.committee_blocks <= height]
    if not due:
        return []
    econ.unsettled = [u for u in econ.unsettled if u not in due]
    events: list[Event] = []
    for u in due:
        stake = {val: econ.ledger.stake(val) for val in sorted(u.scores)}
        verdicts = []
        scored = 0
        for v in u.verdicts:
            entries = [
                (u.scores[val][v.client], stake[val], val)
                for val in sorted(u.scores)
                if v.client in u.scores[val] and stake[val] > 0
            ]
            if entries:
                scored += 1
                median = weighted_median(entries)
                verdicts.append(RoundVerdict(v.client, v.score, median, v.flag, v.tx_hash))
            else:
                verdicts.append(v)
        events.append(
            Event(
                "committee_settled",
                (
                    ("round", str(u.round)),
                    ("validators", str(len(u.scores))),
                    ("scored_clients", str(scored)),
                ),
            )
        )
        events += settle_round(econ, u.round, verdicts)
        events += _pay_committee(econ, u, stake, {v.client: v.agreement for v in verdicts})
    return events


def _pay_committee(
    econ: EconState, u: UnsettledRound, stake: dict[bytes, int], consensus: dict[bytes, int]
) -> list[Event]:
    weights: dict[bytes, int] = {}
    for val in sorted(u.scores):
        scored = u.scores[val]
        if not scored or stake[val] == 0:
            continue
        distance = sum(abs(scored[c] - consensus[c]) for c in sorted(scored)) // len(scored)
        weights[val] = stake[val] * max(0, 1000 - distance)
    total = sum(weights.values())
    pool = min(econ.params.committee_reward_pool, econ.ledger.reserve)
    if total == 0 or pool == 0:
        return []
    paid = 0
    for val in sorted(weights):
        got = econ.ledger.pay_reward(val, pool * weights[val] // total, to_stake=False)
        paid += got
        record = econ.validators.get(val)
        if record is not None:
            record.rewarded += got
    return [Event("committee_rewarded", (("round", str(u.round)), ("paid", str(paid))))]
