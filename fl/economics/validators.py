"""Validator incentives, run at the start of every block, and the validator-set diff at its end.

Theory of operation, per block H (BlockInfo):
1. Evidence: each DuplicateVoteEvidence not seen before burns `double_sign_slash_permille` of
   the validator's stake and tombstones it (jailed for good, power 0).  Evidence is keyed by
   (validator, height) and a tombstoned validator is never slashed again, so the same double
   sign included twice, or two pieces of evidence for one validator, slash exactly once.
2. Rewards: `block_reward` from the reserve; the proposer takes `proposer_bonus_permille` of it,
   the rest is split by voting power among the validators that signed the last commit.  Integer
   floors leave the remainder in the reserve.
3. Downtime: every validator of H-1's set that did not sign block H-1 gets H-1 in its missed
   list; the window is the last `downtime_window_blocks` heights.  Once a validator has been
   tracked for a full window and signed fewer than `downtime_min_signed_permille` of it, it is
   slashed `downtime_slash_permille` and jailed for `downtime_jail_ms` of chain time (block
   time); it rejoins with an unjail transaction.  The window stays in blocks: it measures how
   many of the blocks there were a validator signed.
4. Unbonding entries due by H's time return to their owners' balances.
`power_updates` (end of block) returns the set changes as (key, power) pairs; the engine applies
them at H+2.  Power = bonded // power_unit for admitted, unjailed, untombstoned validators with
at least `validator_stake_min` bonded; 0 otherwise.  A change that would leave no power at all is
held back, because a chain with an empty validator set can never decide again.
"""

from collections.abc import Sequence

from consensus.app import BlockInfo, Event, Misbehavior, VoteInfo
from fl.economics.records import ValidatorRecord
from fl.economics.state import EVIDENCE_KEPT_MAX, EconState


def begin_block(econ: EconState, block: BlockInfo) -> list[Event]:
    events: list[Event] = []
    events += _punish_evidence(econ, block.misbehavior)
    events += _pay_block_rewards(econ, block)
    events += _track_downtime(econ, block.height, block.time_ms, block.last_commit)
    for u in econ.ledger.mature(block.time_ms):
        events.append(
            Event("unbonding_matured", (("owner", u.owner.hex()), ("amount", str(u.amount))))
        )
    return events


def _punish_evidence(econ: EconState, misbehavior: Sequence[Misbehavior]) -> list[Event]:
    events: list[Event] = []
    for m in sorted(misbehavior, key=lambda m: (m.public_key, m.height, m.kind)):
        record = econ.validators.get(m.public_key)
        if m.kind != "duplicate_vote" or record is None or record.tombstoned:
            continue
        if (m.public_key, m.height) in econ.evidence_seen:
            continue
        burned = econ.ledger.slash(m.public_key, econ.params.double_sign_slash_permille)
        record.slashed += burned
        record.tombstoned = True
        record.jailed = True
        # Kept in (height, key) order and cut from the oldest, so a restored node (which
        # decodes the list in that order) prunes exactly what a live node prunes.
        seen = sorted([*econ.evidence_seen, (m.public_key, m.height)], key=lambda e: (e[1], e[0]))
        econ.evidence_seen = seen[-EVIDENCE_KEPT_MAX:]
        events.append(
            Event(
                "validator_slashed",
                (
                    ("validator", m.public_key.hex()),
                    ("reason", "double_sign"),
                    ("height", str(m.height)),
                    ("amount", str(burned)),
                    ("tombstoned", "true"),
                ),
            )
        )
    return events


def _pay_block_rewards(econ: EconState, block: BlockInfo) -> list[Event]:
    params = econ.params
    reward = min(params.block_reward, econ.ledger.reserve)
    if reward == 0:
        return []
    paid: dict[bytes, int] = {}
    if block.proposer in econ.validators:
        bonus = reward * params.proposer_bonus_permille // 1000
        paid[block.proposer] = econ.ledger.pay_reward(block.proposer, bonus, to_stake=False)
        reward -= bonus
    signers = sorted(
        (
            v
            for v in block.last_commit
            if v.signed and v.power > 0 and v.public_key in econ.validators
        ),
        key=lambda v: v.public_key,
    )
    total = sum(v.power for v in signers)
    for v in signers:
        share = reward * v.power // total
        got = econ.ledger.pay_reward(v.public_key, share, to_stake=False)
        paid[v.public_key] = paid.get(v.public_key, 0) + got
    for key in sorted(paid):
        econ.validators[key].rewarded += paid[key]
    return []  # per-block rewards are visible in the records; one event per block would be noise


def _track_downtime(
    econ: EconState, height: int, time_ms: int, last_commit: Sequence[VoteInfo]
) -> list[Event]:
    params = econ.params
    window = params.downtime_window_blocks
    commit_height = height - 1
    events: list[Event] = []
    for vote in sorted(last_commit, key=lambda v: v.public_key):
        record = econ.validators.get(vote.public_key)
        if record is None or record.jailed or record.tombstoned:
            continue
        if not vote.signed:
            record.missed.append(commit_height)
        first = commit_height - window + 1
        record.missed = [h for h in record.missed if h >= first]
        if commit_height - record.tracked_since + 1 < window:
            continue
        signed = window - len(record.missed)
        if signed * 1000 >= params.downtime_min_signed_permille * window:
            continue
        burned = econ.ledger.slash(vote.public_key, params.downtime_slash_permille)
        _jail(record, time_ms + params.downtime_jail_ms)
        record.slashed += burned
        events.append(
            Event(
                "validator_slashed",
                (
                    ("validator", vote.public_key.hex()),
                    ("reason", "downtime"),
                    ("signed", f"{signed}/{window}"),
                    ("amount", str(burned)),
                    ("jailed_until_ms", str(record.jailed_until_ms)),
                ),
            )
        )
    return events


def _jail(record: ValidatorRecord, until_ms: int) -> None:
    record.jailed = True
    record.jailed_until_ms = until_ms
    record.missed = []


def power_of(econ: EconState, key: bytes) -> int:
    record = econ.validators.get(key)
    if record is None or not record.admitted or record.jailed or record.tombstoned:
        return 0
    stake = econ.ledger.stake(key)
    if stake < econ.params.validator_stake_min:
        return 0
    return stake // econ.params.power_unit


def power_updates(econ: EconState) -> list[tuple[bytes, int]]:
    """Set changes since the last call (sorted by key); records them as emitted."""
    keys = sorted(set(econ.validators) | set(econ.emitted_power))
    desired = {k: power_of(econ, k) for k in keys}
    if sum(desired.values()) == 0:
        return []
    changes = [(k, desired[k]) for k in keys if desired[k] != econ.emitted_power.get(k, 0)]
    for key, power in changes:
        if power:
            econ.emitted_power[key] = power
        else:
            econ.emitted_power.pop(key, None)
    return changes


def admit(econ: EconState, key: bytes, height: int) -> None:
    record = econ.validators.get(key)
    if record is None:
        econ.validators[key] = ValidatorRecord(admitted=True, tracked_since=height + 1)
    else:
        record.admitted = True
        record.tracked_since = height + 1
        record.missed = []


def remove(econ: EconState, key: bytes) -> None:
    record = econ.validators.get(key)
    if record is not None:
        record.admitted = False
