"""Client incentives: who may submit, and settling a closed FL round.

Admission: a client needs `client_stake_min` bonded, must not be banned (governance) and must
not be jailed (its jail lasts until round `jailed_until_round`).

Settlement of round r gets one `RoundVerdict` per aggregated update: the rule's integer
contribution score and flag, and the agreement score (fl/economics/scoring.py: cosine with the
round's coordinate-wise median, permille).
- malicious: agreement * 1000 < `malicious_below_median_permille` * M, M the round's lower median
  agreement.  It loses `reputation_penalty`, earns nothing and gains a strike.  From
  `slash_strikes` strikes on, each malicious verdict burns `client_slash_permille` of its stake
  (bonded and unbonding); from `jail_strikes` strikes on, it is also jailed for
  `client_jail_rounds` rounds.  One low round is not enough by default (slash_strikes = 2): an
  honest client with a very skewed shard can fall below the bar once late in training, while
  colluding attackers stay below it round after round.
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
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class RoundVerdict:
    client: bytes
    score: int  # the aggregation rule's contribution score, permille
    agreement: int  # agreement with the round's median update, permille
    flag: str = ""  # the rule's reason for not using the update as sent
    tx_hash: bytes = b""  # the update's transaction, so off-chain scorers can fetch it


def malicious_below(econ: EconState, agreements: Sequence[int]) -> int:
    """Agreement scores with agreement * 1000 below this value are malicious this round."""
    if not agreements:
        return 0
    ordered = sorted(agreements)
    return econ.params.malicious_below_median_permille * ordered[(len(ordered) - 1) // 2]


def settle_round(econ: EconState, fl_round: int, verdicts: Sequence[RoundVerdict]) -> list[Event]:
    params = econ.params
    ledger = econ.ledger
    events: list[Event] = []
    bar = malicious_below(econ, [v.agreement for v in verdicts])
    ordered = sorted(verdicts, key=lambda v: v.client)
    accepted = {
        v.client: max(v.score, 0) * econ.client(v.client).reputation
        for v in ordered
        if not v.flag and v.agreement * 1000 >= bar
    }
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
    slashed = malicious = 0
    for v in ordered:
        if v.client in accepted:
            continue
        record = econ.client(v.client)
        record.flagged += 1
        record.reputation = max(0, record.reputation - params.reputation_penalty)
        if v.agreement * 1000 >= bar:
            continue  # rejected by the rule, not malicious: no reward, no slash
        malicious += 1
        record.strikes += 1
        attrs: list[tuple[str, str]] = [
            ("client", v.client.hex()),
            ("round", str(fl_round)),
            ("agreement", str(v.agreement)),
            ("strikes", str(record.strikes)),
        ]
        if record.strikes >= params.slash_strikes:
            slashed += 1
            burned = ledger.slash(v.client, params.client_slash_permille)
            record.slashed += burned
            attrs.append(("amount", str(burned)))
        if record.strikes >= params.jail_strikes:
            record.jailings += 1
            record.jailed_until_round = fl_round + 1 + params.client_jail_rounds
            attrs.append(("jailed_until_round", str(record.jailed_until_round)))
        events.append(Event("client_slashed" if len(attrs) > 4 else "client_struck", tuple(attrs)))
    events.append(
        Event(
            "round_settled",
            (
                ("round", str(fl_round)),
                ("rewarded", str(len(accepted))),
                ("paid", str(paid_total)),
                ("rejected", str(len(ordered) - len(accepted) - malicious)),
                ("malicious", str(malicious)),
                ("slashed", str(slashed)),
            ),
        )
    )
    return events


def set_banned(econ: EconState, client: bytes, banned: bool) -> None:
    econ.client(client).banned = banned
