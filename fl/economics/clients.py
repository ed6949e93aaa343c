"""Client incentives: who may submit, settling a closed FL round, and objective faults.

Admission (`check_can_submit`): a client must not be banned (governance) or jailed (until
round `jailed_until_round`), must hold `client_stake_min` bonded and, in registry mode
(`client_registry` = 1), must have been admitted by a `client_admit` proposal.

Settlement never punishes one round's disagreement.  Non-IID data makes honest updates
disagree with the round's centre all the time (digits, 30 clients, Dirichlet 0.5: the median
honest update has cosine 0.07 with the coordinate median, and sign flippers -0.05), so neither a
distance nor a single verdict is evidence.  Each round gives every judged update a suspicion in
permille:
  - 1000 for a near-copy of another update of the round (cosine >= `collusion_permille` and
    within r/100 of it, both at least r/20 long, r the round's median distance from the
    coordinate median; fl.aggregate.copies; flagged "near-copy" by layer.py): honest updates
    never come that close (closest honest pair measured: 0.051 r, on breast_cancer, where
    cosine alone is no evidence since two-class updates are all nearly parallel), colluders
    optimising one vector against the public rule send it from every key.  In a single-phase
    round (no commit-reveal) only the later-included update of a pair counts, so copying an
    honest client's public update frames the copier, not its victim;
  - `evidence_flag_permille` (500) if the rule flagged it for its conduct, in a round without
    near-copies only (colluders steer the rule into flagging honest outliers: min-max at 30%
    kept one honest client flagged in 46 of 50 rounds).  Below the slashing bound on purpose:
    the rule flags some honest clients almost every round even with no attacker (centered
    clipping, Dirichlet 0.1, seeds 1 and 2: four honest clients flagged in 43-45 of 50
    rounds), so its flags cost rewards but can never slash by themselves.  A flag for distance
    alone (clipped, dropped, not selected: fl/aggregate/flags.py) is no suspicion at all:
    the honest clients whose classes the model gets wrong are the ones far from the centre;
  - when `evidence_low_permille` = L > 0 (meant for committee scores, which measure held-out
    accuracy; on-chain agreement separates nothing), (bar - 1000 a) * 1000 // bar for an
    agreement a below bar = L * M, M the round's lower median agreement;
the largest of these.  A client's evidence is the integer EWMA e <- (e * (1000 - d) + s * d) //
1000, d = `evidence_decay_permille` when s >= e and d = `evidence_forget_permille` (a tenth of
it by default) when s < e: evidence rises fast and fades slowly.  Evidence that faded as fast as
it rose could be played: a colluder that reads its own evidence (public state) and sends a clean
update whenever its next copy would reach the bound settles at the bound B with copies in a
share B of its rounds (75%; 73% with the integer steps), never slashed, and a fixed cycle of 10
copying rounds and 10 clean ones peaked at 641.  With rise r and fade f the share is about f B /
(r (1 - B) + f B): 23% with the defaults (25% with the integer steps), and the 10-and-10 cycle
is slashed in round 45 (tests/econ/test_clients.py).  Only a client judged in at least
`evidence_rounds_min` rounds whose evidence reached `evidence_slash_permille` is slashed
(`client_slash_permille` of its stake) and jailed; its evidence and round count then start
again, so a second slash needs as much fresh evidence as the first.  Calibrated on `fedchain
eval` (digits, 30 clients, 50 rounds, Dirichlet 0.1 and 0.5; breast_cancer and mnist1d too since
f25181a): no honest update was ever a near-copy, and colluders copying one vector reach evidence
above 900.  With the defaults (d = 60, bound 750, 10 rounds) a client that sends near-copies
every round is slashed after 23 rounds; flags and unmatched reveals alone settle at most at 500
(an EWMA never passes its largest input), so (with `evidence_low_permille` = 0) an honest
client can only be slashed through >= 12 near-copy rounds (from 500: 1000 - 500 * 0.94^k >= 750
needs k >= 12), which with the slow fade need not be consecutive; docs/robustness.md states the
bound.

Rewards: the pool is min(`round_reward_pool`, reserve), split over the updates the rule used
(unflagged, or flagged only as clipped: a clipped update was used, and history_clip scores it
by its trust whatever the clip, fl/aggregate/history.py) of clients not slashed
in this settlement, at the reputation they brought into it, by score * (1000 - s) * reputation
(* bonded stake when `bond_per_weight` > 0, so reward is linear in stake and splitting stake
over keys earns nothing more).  Floors leave the remainder in the reserve.  Reputation only
scales rewards, and never costs stake.  It is an EWMA of the client's conduct: an unsuspected
update the rule used moves it `reputation_rate_permille` of the way to 1000, a suspect or
conduct-flagged one the same share of the way to 0, and one left out for its distance leaves it
alone.  So it settles near the client's share of clean rounds, and pay goes roughly with that
share squared (a flagged round pays nothing, and the clean ones pay at the reputation).  Fixed
steps (+20, -100 until session 11) made a cliff at one flagged round in six: above it a client
sank to 0 and was paid nothing even in its clean rounds.  The resemblance flag does not
separate honest clients from attackers that finely: on breast_cancer, clean, honest clients
with alike label mixes are flagged "moves with others" in 11-14 of 30 rounds, and were paid
78-146 tokens against a mean of 986 (docs/robustness.md, "Reputation without a cliff").  Before
distance verdicts were told apart (session 10), a clipped update earned nothing and cost
reputation too (docs/robustness.md, "Distance is no evidence").

Objective faults (`punish_fault`: two different updates or commitments for one round, an
update whose bytes do not decode, a reveal that does not match its commitment) are signed
evidence by themselves and are slashed at once, at most once per client per round.
Clients are visited in key order, so nothing depends on how a list was built.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.app import Event
from fl.aggregate.flags import Distance, distance
from fl.aggregate.weighted import VOTES_MAX
from fl.economics.params import EconParams
from fl.economics.state import EconState
from fl.errors import RejectedError

REPUTATION_MAX = 1000
PERMILLE = 1000
NEAR_COPY = "near-copy"  # the flag layer.py gives an update that is a near-copy of another


def check_can_submit(econ: EconState, client: bytes, fl_round: int) -> None:
    record = econ.clients.get(client)
    if record is not None and record.banned:
        raise RejectedError("client is banned by governance")
    if record is not None and fl_round < record.jailed_until_round:
        raise RejectedError(f"client is jailed until round {record.jailed_until_round}")
    if econ.params.client_registry and (record is None or not record.admitted):
        raise RejectedError("client is not in the client registry (admitted by governance)")
    stake = econ.ledger.stake(client)
    if stake < econ.params.client_stake_min:
        raise RejectedError(
            f"bonded stake {stake} is below the client minimum {econ.params.client_stake_min}"
        )


def weight_cap(econ: EconState, client: bytes) -> int | None:
    """The most aggregation weight (samples) the client's bond buys, or None if unbounded.

    A floor of a linear function: for stakes s_1..s_k, sum(s_j // b) <= (sum s_j) // b, so a
    stake split over many keys never weighs more than it does on one key."""
    per_weight = econ.params.bond_per_weight
    if per_weight == 0:
        return None
    return econ.ledger.stake(client) // per_weight


def stake_votes(econ: EconState, client: bytes) -> int:
    """The client's say in history_clip's medians, radius and average: one vote per
    `client_stake_min` bonded (at least 1, at most VOTES_MAX), when `bond_per_weight` > 0.

    The robust rule counted keys, so one stake split over ten keys at the minimum had ten
    times the say of one key holding it (issue 14's sybil target, missed for the default rule
    until session 13).  A floor of a linear function again: sum(s_j // m) <= (sum s_j) // m.
    The cap keeps the rule's integer bounds; a stake above VOTES_MAX * `client_stake_min`
    (6.5M tokens at the default 100) gains nothing more on one key and could on several."""
    return votes_for_stake(econ.ledger.stake(client), econ.params)


def votes_for_stake(stake: int, params: EconParams) -> int:
    """`stake_votes` for a client holding `stake` bonded under `params`."""
    if params.bond_per_weight == 0 or params.client_stake_min == 0:
        return 1
    return max(1, min(VOTES_MAX, stake // params.client_stake_min))


@dataclass(frozen=True, slots=True)
class RoundVerdict:
    client: bytes
    score: int  # the aggregation rule's contribution score, permille
    agreement: int  # agreement with the round's median update, permille
    flag: str = ""  # the rule's reason for not using the update as sent
    tx_hash: bytes = b""  # the update's transaction, so off-chain scorers can fetch it


def low_bar(econ: EconState, agreements: Sequence[int]) -> int:
    """1000 * agreement below this value makes an update suspect this round."""
    if not agreements:
        return 0
    ordered = sorted(agreements)
    return econ.params.evidence_low_permille * ordered[(len(ordered) - 1) // 2]


def suspicion(econ: EconState, bar: int, agreement: int, flag: str, flags_trusted: bool) -> int:
    """One round's suspicion of one update, permille (see the module docstring)."""
    if flag == NEAR_COPY:
        return PERMILLE
    below = 0
    if bar > 0 and agreement * PERMILLE < bar:
        below = (bar - agreement * PERMILLE) * PERMILLE // bar
    if flags_trusted and conduct_flagged(flag):
        below = max(below, econ.params.evidence_flag_permille)
    return min(PERMILLE, below)


def conduct_flagged(flag: str) -> bool:
    """A flag that judges the client's conduct (a near-copy, moving with others), not only its
    distance from the round's centre."""
    return bool(flag) and distance(flag) is Distance.NONE


def next_evidence(evidence: int, suspicion: int, params: EconParams) -> int:
    """One round's step of a client's evidence: toward a higher suspicion at
    `evidence_decay_permille`, toward a lower one at `evidence_forget_permille` (the module
    docstring says why the two differ)."""
    if suspicion >= evidence:
        rate = params.evidence_decay_permille
    else:
        rate = params.evidence_forget_permille
    return (evidence * (PERMILLE - rate) + suspicion * rate) // PERMILLE


def _accumulate(econ: EconState, client: bytes, fl_round: int, s: int) -> list[Event]:
    """Add one round's suspicion to the client's evidence; slash if the evidence holds."""
    params = econ.params
    record = econ.client(client)
    record.evidence = next_evidence(record.evidence, s, params)
    record.judged += 1
    if (
        record.judged < params.evidence_rounds_min
        or record.evidence < params.evidence_slash_permille
    ):
        return []
    evidence = record.evidence
    record.evidence = 0
    record.judged = 0
    return [_slash(econ, client, fl_round, "evidence", (("evidence", str(evidence)),))]


def _slash(
    econ: EconState, client: bytes, fl_round: int, reason: str, extra: tuple[tuple[str, str], ...]
) -> Event:
    params = econ.params
    record = econ.client(client)
    burned = econ.ledger.slash(client, params.client_slash_permille)
    record.slashed += burned
    record.jailings += 1
    record.jailed_until_round = max(
        record.jailed_until_round, fl_round + 1 + params.client_jail_rounds
    )
    return Event(
        "client_slashed",
        (
            ("client", client.hex()),
            ("round", str(fl_round)),
            ("reason", reason),
            *extra,
            ("amount", str(burned)),
            ("jailed_until_round", str(record.jailed_until_round)),
        ),
    )


def settle_round(econ: EconState, fl_round: int, verdicts: Sequence[RoundVerdict]) -> list[Event]:
    params = econ.params
    ledger = econ.ledger
    events: list[Event] = []
    bar = low_bar(econ, [v.agreement for v in verdicts])
    ordered = sorted(verdicts, key=lambda v: v.client)
    # Colluders who copy one vector can steer the rule into flagging honest outliers round
    # after round (min-max at 30%: one honest client flagged in 46 of 50 rounds), so in a round
    # with near-copies the rule's flags are no evidence; the copies themselves are.
    trusted = not any(v.flag == NEAR_COPY for v in ordered)
    suspected = {v.client: suspicion(econ, bar, v.agreement, v.flag, trusted) for v in ordered}
    # Rewards weigh the reputation the client brought into this round.
    reputation = {v.client: econ.client(v.client).reputation for v in ordered}
    slashed: set[bytes] = set()
    suspects = 0
    rate = params.reputation_rate_permille
    for v in ordered:
        record = econ.client(v.client)
        s = suspected[v.client]
        if v.flag:
            record.flagged += 1
        if s or conduct_flagged(v.flag):
            suspects += 1
            record.reputation = toward(record.reputation, 0, rate)
        elif distance(v.flag) is not Distance.UNUSED:  # used: as sent, or clipped
            record.reputation = toward(record.reputation, REPUTATION_MAX, rate)
        judged = _accumulate(econ, v.client, fl_round, s)
        if judged:
            slashed.add(v.client)
        events += judged
    bonded = params.bond_per_weight > 0
    weights = {
        v.client: max(v.score, 0)
        * (PERMILLE - suspected[v.client])
        * reputation[v.client]
        * (ledger.stake(v.client) if bonded else 1)
        for v in ordered
        if paid_for(v.flag) and v.client not in slashed
    }
    pool = min(params.round_reward_pool, ledger.reserve)
    total = sum(weights.values())
    paid_total = 0
    for client in sorted(weights):
        record = econ.client(client)
        reward = pool * weights[client] // total if total else 0
        paid = ledger.pay_reward(client, reward, to_stake=params.reward_to_stake == 1)
        paid_total += paid
        record.rewarded += paid
        record.accepted += 1
    events.append(
        Event(
            "round_settled",
            (
                ("round", str(fl_round)),
                ("rewarded", str(len(weights))),
                ("paid", str(paid_total)),
                ("suspect", str(suspects)),
                ("slashed", str(len(slashed))),
            ),
        )
    )
    return events


def toward(value: int, target: int, rate_permille: int) -> int:
    """`value` moved `rate_permille` of the way to `target`, rounded away from `value`, so
    every step moves it by at least 1 (a floor would leave it short of 1000 for good)."""
    step = (target - value) * rate_permille
    if step >= 0:
        return value + (step + PERMILLE - 1) // PERMILLE
    return value - (-step + PERMILLE - 1) // PERMILLE


def paid_for(flag: str) -> bool:
    """Whether an update earns its score this round: used as sent, or clipped (still used); not
    when left out or flagged for conduct."""
    return not flag or distance(flag) is Distance.CLIPPED


def note_unmatched_reveal(econ: EconState, client: bytes, fl_round: int) -> list[Event]:
    """A reveal without a commitment, or a commitment never revealed, weighs as a flagged round
    (`evidence_flag_permille`), below the slashing bound: it never slashes by itself.

    Either is what an honest client does whose commitment was lost or who crashed before its
    reveal, so neither proves anything.  At full suspicion (before session 14) the slow fade
    added such rounds up, and a client failing a third of its rounds was slashed.  Withholding
    gives an attacker nothing it lacks without committing (it may always stay out of a round),
    except the choice, made after the honest reveals are public, of which of its own fixed
    commitments to reveal; docs/robustness.md, "Withheld reveals", weighs that choice.  A reveal
    that contradicts the client's commitment is proof and is slashed at once (updates.py)."""
    return _accumulate(econ, client, fl_round, econ.params.evidence_flag_permille)


def punish_fault(econ: EconState, client: bytes, fl_round: int, reason: str) -> list[Event]:
    """Slash an objective fault at once; a second fault in the same round costs nothing more
    (one piece of evidence, one punishment, as for a validator's double sign)."""
    record = econ.client(client)
    if record.fault_round == fl_round:
        return []
    record.fault_round = fl_round
    record.faults += 1
    return [_slash(econ, client, fl_round, reason, ())]


def set_banned(econ: EconState, client: bytes, banned: bool) -> None:
    econ.client(client).banned = banned


def set_admitted(econ: EconState, client: bytes, admitted: bool) -> None:
    econ.client(client).admitted = admitted
