"""Governable parameters of the incentives and governance layers.

One frozen value with one spec table, encoded as `[name, value]` pairs in table order (the same
scheme as fl/params.py).  Fractions are in permille so every rule stays an integer rule.  The
governance layer resolves a parameter name across this table and the FL table; the names are
disjoint (tests/econ/test_params.py checks it).
"""

from dataclasses import dataclass, fields, replace

from consensus.codec import Value, expect_list, expect_seq, expect_str
from consensus.errors import CodecError
from fl.errors import FLInvariantError, RejectedError
from fl.params import DAY_MS, ParamSpec

TOKENS_MAX = 10**18
# Periods are in milliseconds of chain time (BlockInfo.time_ms), at most a year.
PERIOD_MS_MAX = 365 * DAY_MS


@dataclass(frozen=True, slots=True)
class EconParams:
    # -- token ----------------------------------------------------------------------------------
    fee_per_byte: int = 0  # paid from the sender's balance into the reserve
    # -- staking --------------------------------------------------------------------------------
    # Chain time (BFT block time) before unbonded stake is liquid again; it stays slashable
    # meanwhile (ledger.slash), so it must outlast how long evidence takes to land.
    unbonding_period_ms: int = 3 * DAY_MS
    client_stake_min: int = 100  # bonded stake a client needs to submit an update
    # Client admission: 0 = bond (any key holding `client_stake_min` bonded), 1 = registry (only
    # keys admitted by a `client_admit` proposal, and holding `client_stake_min`).
    client_registry: int = 0
    # Bonded tokens per unit of aggregation weight (samples) and of reward weight; 0 = unbounded.
    # Linear in stake, so splitting one stake over many keys never adds weight.  On by default:
    # a bonded chain whose bond bought unbounded weight had admission without a sybil bound (one
    # stake of 100 on 8 keys claiming the largest sample count outweighed any honest client);
    # the open chain (genesis.py OPEN_GENESIS), where nobody holds stake, sets 0.
    bond_per_weight: int = 1
    validator_stake_min: int = 1_000
    power_unit: int = 1_000  # voting power = bonded // power_unit
    # -- client incentives ----------------------------------------------------------------------
    round_reward_pool: int = 1_000  # paid from the reserve each closed round, split by score
    # 0: client rewards are paid liquid; 1: bonded (stake grows).  Liquid by default since
    # session 13: stake buys votes in the default rule (clients.py `stake_votes`), and bonded
    # rewards fed the rule's own payouts back into its votes, so a client the rule paid well
    # gained say and one it paid little lost it (breast_cancer, adaptive_unflagged, 80.8 ->
    # 74.0; Dirichlet 0.1, clean, worst honest client 77.0 -> 72.0; docs/robustness.md, "Stake
    # votes").  A client may still bond what it earned: say is a deliberate stake, not a payout.
    reward_to_stake: int = 0
    reputation_initial: int = 500
    # Reputation (a reward share, never stake) is an EWMA of the client's conduct: each used
    # update moves it this permille of the way to 1000, each suspect or conduct-flagged one as
    # far toward 0 (clients.py), so it settles near the share of clean rounds.
    reputation_rate_permille: int = 100
    # Cross-round evidence (clients.py).  One round's suspicion of an update (0..1000) is the
    # largest of: `evidence_flag_permille` if the rule flagged it (in a round without
    # near-copies); 1000 if it is a near-copy of another update of the round: cosine at least
    # `collusion_permille` (0: not computed) AND within r/100 of it, both at least r/20 long,
    # r the round's median distance from the coordinate median (scoring.py: honest two-class
    # updates are nearly parallel, so cosine alone slashed honest clients); and, when
    # `evidence_low_permille` > 0, how far its agreement falls below that permille of the round
    # median.  A client's evidence is the integer EWMA of its suspicions with weight
    # `evidence_decay_permille` toward a suspicion above it and `evidence_forget_permille`
    # toward one below it; slashing needs at least `evidence_rounds_min` judged rounds and
    # evidence >= `evidence_slash_permille`.  Evidence that fell as fast as it rose let a
    # colluder that reads its own (public) evidence copy in 73% of its rounds unslashed; a
    # tenth as fast caps that at 25% (clients.py).
    evidence_flag_permille: int = 500  # < the bound: the rule's flags alone never slash
    collusion_permille: int = 950
    evidence_low_permille: int = 0
    evidence_decay_permille: int = 60
    evidence_forget_permille: int = 6
    evidence_slash_permille: int = 750
    evidence_rounds_min: int = 10
    client_slash_permille: int = 100  # of bonded stake, per slash (evidence or objective fault)
    client_jail_rounds: int = 3
    # Blocks after a round closes in which validators may score its updates (0: no committee).
    committee_blocks: int = 0
    committee_reward_pool: int = 100  # per settled round, to validators by stake * consensus
    # Commit-reveal rounds (fl/rounds.py): 0 = single phase (updates sent in the clear); N > 0 =
    # the round's first phase (at most N blocks, or until `updates_per_round` commitments) takes
    # only commitments sha256(update || salt), the second only reveals matching them.
    commit_blocks: int = 0
    # -- validator incentives -------------------------------------------------------------------
    block_reward: int = 10
    proposer_bonus_permille: int = 200
    double_sign_slash_permille: int = 50
    downtime_window_blocks: int = 100
    downtime_min_signed_permille: int = 500
    downtime_slash_permille: int = 1
    downtime_jail_ms: int = 600_000  # chain time before a downtime-jailed validator may unjail
    # -- governance -----------------------------------------------------------------------------
    gov_deposit_min: int = 1_000
    gov_voting_period_ms: int = DAY_MS  # chain time from a proposal's block to its tally
    gov_quorum_permille: int = 334
    gov_threshold_permille: int = 500
    gov_veto_permille: int = 334
    gov_burn_no_quorum: int = 0  # 1: a proposal that misses quorum burns its deposit
    gov_active_max: int = 16


GOVERNABLE: tuple[ParamSpec, ...] = (
    ParamSpec("fee_per_byte", 0, 1_000_000),
    ParamSpec("unbonding_period_ms", 1, PERIOD_MS_MAX),
    ParamSpec("client_stake_min", 0, TOKENS_MAX),
    ParamSpec("client_registry", 0, 1),
    ParamSpec("bond_per_weight", 0, TOKENS_MAX),
    ParamSpec("validator_stake_min", 1, TOKENS_MAX),
    ParamSpec("power_unit", 1, TOKENS_MAX),
    ParamSpec("round_reward_pool", 0, TOKENS_MAX),
    ParamSpec("reward_to_stake", 0, 1),
    ParamSpec("reputation_initial", 0, 1000),
    ParamSpec("reputation_rate_permille", 0, 1000),
    ParamSpec("evidence_flag_permille", 0, 1000),
    ParamSpec("collusion_permille", 0, 1000),
    ParamSpec("evidence_low_permille", 0, 1000),
    ParamSpec("evidence_decay_permille", 1, 1000),
    ParamSpec("evidence_forget_permille", 0, 1000),
    ParamSpec("evidence_slash_permille", 1, 1001),
    ParamSpec("evidence_rounds_min", 1, 1_000_000),
    ParamSpec("client_slash_permille", 0, 1000),
    ParamSpec("client_jail_rounds", 0, 1_000_000),
    ParamSpec("committee_blocks", 0, 10_000),
    ParamSpec("committee_reward_pool", 0, TOKENS_MAX),
    ParamSpec("commit_blocks", 0, 10_000),
    ParamSpec("block_reward", 0, TOKENS_MAX),
    ParamSpec("proposer_bonus_permille", 0, 1000),
    ParamSpec("double_sign_slash_permille", 0, 1000),
    ParamSpec("downtime_window_blocks", 1, 10_000),
    ParamSpec("downtime_min_signed_permille", 0, 1000),
    ParamSpec("downtime_slash_permille", 0, 1000),
    ParamSpec("downtime_jail_ms", 0, PERIOD_MS_MAX),
    ParamSpec("gov_deposit_min", 1, TOKENS_MAX),
    ParamSpec("gov_voting_period_ms", 1, PERIOD_MS_MAX),
    ParamSpec("gov_quorum_permille", 0, 1000),
    ParamSpec("gov_threshold_permille", 0, 1000),
    ParamSpec("gov_veto_permille", 0, 1000),
    ParamSpec("gov_burn_no_quorum", 0, 1),
    ParamSpec("gov_active_max", 1, 1000),
)

_SPECS = {spec.name: spec for spec in GOVERNABLE}


def is_econ_param(name: str) -> bool:
    return name in _SPECS


def with_value(params: EconParams, name: str, value: int | str) -> EconParams:
    spec = _SPECS.get(name)
    if spec is None:
        raise RejectedError(f"unknown parameter {name!r}")
    spec.check(value)
    if isinstance(value, str):  # every incentives parameter is an integer; check() said so
        raise RejectedError(f"{name}: {value!r} is not an integer")
    return replace(params, **{name: value})


def validate(params: EconParams) -> None:
    for spec in GOVERNABLE:
        spec.check(getattr(params, spec.name))


def encode_params(params: EconParams) -> list[Value]:
    return [[spec.name, getattr(params, spec.name)] for spec in GOVERNABLE]


def decode_params(value: Value) -> EconParams:
    """Decode a full table, or a partial one (genesis may name only what it overrides)."""
    kwargs: dict[str, int] = {}
    for item in expect_seq(value, "econ params", len(GOVERNABLE)):
        name_v, raw = expect_list(item, 2, "econ params entry")
        name = expect_str(name_v, "econ params name")
        if name not in _SPECS:
            raise CodecError(f"econ params: unknown parameter {name!r}")
        if name in kwargs:
            raise CodecError(f"econ params: {name} given twice")
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise CodecError(f"econ params: {name} must be an integer")
        kwargs[name] = raw
    if {f.name for f in fields(EconParams)} != set(_SPECS):
        raise FLInvariantError("econ params: table and dataclass disagree")
    params = replace(EconParams(), **kwargs)
    try:
        validate(params)
    except RejectedError as exc:
        raise CodecError(f"econ params: {exc}") from None
    return params
