"""Client incentives: who may submit, and settling a closed FL round.

Admission: a client needs `client_stake_min` bonded, must not be banned (governance) and must
not be jailed (its jail lasts until round `jailed_until_round`).

Settlement of round r gets every aggregated update as (client, score, flag): the rule's
integer contribution score in permille and its flag ("" if the rule used the update as sent).
- malicious: score * 1000 < `malicious_below_median_permille` * M, where M is the round's lower
  median score.  It loses `reputation_penalty` and `client_slash_permille` of its stake (bonded
  and unbonding) and gains a strike; at `jail_strikes` strikes it is jailed for
  `client_jail_rounds` rounds and its strikes reset.
- rejected: flagged by the rule but not malicious.  It loses `reputation_penalty`, earns nothing,
  and keeps its stake: distance filters reject honest outliers too (Multi-Krum keeps half the
  updates by default), so a filter's verdict alone is not evidence enough to burn stake.
- accepted: the pool is min(`round_reward_pool`, reserve); each accepted client's weight is
  score * reputation and its reward is pool * weight // total weight (floors; the remainder stays
  in the reserve).  Rewards are bonded when `reward_to_stake` is 1, so honest stake grows.  An
  accepted client gains `reputation_gain` (capped at 1000) and loses one strike.
Clients are visited in key order, so the result does not depend on how the list was built.
"""

from collections.abc import Sequence

from consensus.app import Event
from fl.economics.state import EconState
from fl.errors import RejectedError

REPUTATION_MAX = 1000


def check_can_submit(econ: EconState, client: bytes, fl_round: int) -> None:
    record = econ.clients.get(client)
    if record is not None and record.banned:
        raise RejectedError("client is banned by governance")
    if record is not None and fl_round < record.jailed_until_round:
        raise RejectedError(f"client is jailed until round {record.jailed_until_round}")
    stake = econ.ledger.stake(client)
    if stake < econ.params.client_stake_min:
        raise RejectedError(
            f"bonded stake {stake} is below the client minimum {econ.params.client_stake_min}"
        )


def malicious_threshold(econ: EconState, scores: Sequence[int]) -> int:
    """Scores strictly below this (in permille * 1000 units of the median) are malicious."""
    if not scores:
        return 0
    ordered = sorted(scores)
    return econ.params.malicious_below_median_permille * ordered[(len(ordered) - 1) // 2]


def settle_round(
    econ: EconState, fl_round: int, verdicts: Sequence[tuple[bytes, int, str]]
) -> list[Event]:
    params = econ.params
    ledger = econ.ledger
    events: list[Event] = []
    threshold = malicious_threshold(econ, [score for _, score, _ in verdicts])
    accepted: dict[bytes, int] = {}
    rejected: list[tuple[bytes, int, str]] = []
    for client, score, flag in sorted(verdicts):
        if score * 1000 < threshold or flag:
            rejected.append((client, score, flag))
        else:
            accepted[client] = max(score, 0) * econ.client(client).reputation
    pool = min(params.round_reward_pool, ledger.reserve)
    total = sum(accepted.values())
    paid_total = 0
    for client in sorted(accepted):
        record = econ.client(client)
        reward = pool * accepted[client] // total if total else 0
        paid = ledger.pay_reward(client, reward, to_stake=params.reward_to_stake == 1)
        paid_total += paid
        record.rewarded += paid
        record.accepted += 1
        record.reputation = min(REPUTATION_MAX, record.reputation + params.reputation_gain)
        record.strikes = max(0, record.strikes - 1)
    slashed = 0
    for client, score, flag in rejected:
        record = econ.client(client)
        record.flagged += 1
        record.reputation = max(0, record.reputation - params.reputation_penalty)
        if score * 1000 >= threshold:
            continue  # rejected by the rule, not malicious: no reward, no slash
        slashed += 1
        burned = ledger.slash(client, params.client_slash_permille)
        record.slashed += burned
        record.strikes += 1
        attrs: list[tuple[str, str]] = [
            ("client", client.hex()),
            ("round", str(fl_round)),
            ("score", str(score)),
            ("reason", (flag or "score below the malicious threshold")[:80]),
            ("amount", str(burned)),
        ]
        if record.strikes >= params.jail_strikes:
            record.strikes = 0
            record.jailings += 1
            record.jailed_until_round = fl_round + 1 + params.client_jail_rounds
            attrs.append(("jailed_until_round", str(record.jailed_until_round)))
        events.append(Event("client_slashed", tuple(attrs)))
    events.append(
        Event(
            "round_settled",
            (
                ("round", str(fl_round)),
                ("rewarded", str(len(accepted))),
                ("paid", str(paid_total)),
                ("rejected", str(len(rejected) - slashed)),
                ("slashed", str(slashed)),
            ),
        )
    )
    return events


def set_banned(econ: EconState, client: bytes, banned: bool) -> None:
    econ.client(client).banned = banned
