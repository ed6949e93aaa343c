"""Client incentives: who may submit, and settling a closed FL round.

Admission: a client needs `client_stake_min` bonded, must not be banned (governance) and must
not be jailed (its jail lasts until round `jailed_until_round`).

Settlement of round r, given the accepted updates with their integer contribution scores and
the flagged ones (both from the round-close code):
- the pool is min(`round_reward_pool`, reserve); each accepted client's weight is
  score * reputation and its reward is pool * weight // total weight (floors; the remainder stays
  in the reserve).  Rewards are bonded when `reward_to_stake` is 1, so honest stake grows.
- an accepted client gains `reputation_gain` (capped at 1000) and loses one strike;
- a flagged client loses `reputation_penalty` and `client_slash_permille` of its stake, and gains
  a strike; at `jail_strikes` strikes it is jailed for `client_jail_rounds` rounds and its strikes
  reset.
Clients are visited in key order, so the result does not depend on how the lists were built.
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


def settle_round(
    econ: EconState,
    fl_round: int,
    accepted: Sequence[tuple[bytes, int]],
    flagged: Sequence[tuple[bytes, str]],
) -> list[Event]:
    params = econ.params
    ledger = econ.ledger
    events: list[Event] = []
    pool = min(params.round_reward_pool, ledger.reserve)
    weights = {c: max(score, 0) * econ.client(c).reputation for c, score in accepted}
    total = sum(weights.values())
    paid_total = 0
    for client in sorted(weights):
        record = econ.client(client)
        reward = pool * weights[client] // total if total else 0
        paid = ledger.pay_reward(client, reward, to_stake=params.reward_to_stake == 1)
        paid_total += paid
        record.rewarded += paid
        record.accepted += 1
        record.reputation = min(REPUTATION_MAX, record.reputation + params.reputation_gain)
        record.strikes = max(0, record.strikes - 1)
    for client, reason in sorted(flagged):
        record = econ.client(client)
        burned = ledger.slash(client, params.client_slash_permille)
        record.slashed += burned
        record.flagged += 1
        record.reputation = max(0, record.reputation - params.reputation_penalty)
        record.strikes += 1
        attrs: list[tuple[str, str]] = [
            ("client", client.hex()),
            ("round", str(fl_round)),
            ("reason", reason[:80]),
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
                ("rewarded", str(len(weights))),
                ("paid", str(paid_total)),
                ("slashed_clients", str(len(flagged))),
            ),
        )
    )
    return events


def set_banned(econ: EconState, client: bytes, banned: bool) -> None:
    econ.client(client).banned = banned
