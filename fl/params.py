"""Governable parameters of the FL application.

`Params` is a frozen value; governance changes one entry by name through `with_value`, which
checks the table below.  The canonical encoding is a list of `[name, value]` pairs in table
order, so a new parameter is added by appending one field and one `ParamSpec` (the incentives
and governance code append theirs the same way) without redesigning the encoding.
"""

from dataclasses import dataclass, fields, replace

from consensus.codec import Value, expect_list, expect_seq, expect_str
from consensus.errors import CodecError
from fl.errors import RejectedError
from fl.fixed import NORM_MAX, ONE, ROUND_UPDATES_MAX, SAMPLES_MAX

RULES = ("fedavg", "median", "trimmed_mean", "multi_krum", "centered_clip", "history_clip")
DEFAULT_RULE = "history_clip"
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Params:
    rule: str = DEFAULT_RULE
    # The round closes at the end of the block in which it holds this many accepted updates ...
    updates_per_round: int = 10
    # ... or at the end of the first block whose time (the BFT block time, consensus/engine/
    # checks.py) is at least the opening block's time + round_deadline_ms: clients get this
    # long to fetch, train and submit, however fast or sparse the blocks are.
    round_deadline_ms: int = 60_000
    # A round that reaches its deadline with fewer updates keeps the model and reopens.
    updates_min: int = 1
    # L2 bound on one delta in model units (a sanity bound; robust rules do the real work).
    update_norm_max: int = 1024 * ONE
    # Self-reported sample counts are capped at this weight so one client cannot claim the round.
    sample_weight_max: int = 1 << 16
    trim_permille: int = 200
    # Multi-Krum: assumed Byzantine fraction and how many updates it keeps (both in permille of n).
    krum_byzantine_permille: int = 300
    krum_keep_permille: int = 500
    # Centered clipping: iterations, and the clip radius as permille of the median deviation.
    clip_iterations: int = 3
    clip_radius_permille: int = 1000
    # ... and updates farther than this (permille of the radius) are dropped; 0 never drops.
    clip_drop_permille: int = 3000
    # history_clip (fl/aggregate/history.py; it shares clip_iterations/_radius/_drop above):
    # the radius may grow by this factor per round, and its EMA takes this share of a round ...
    hist_growth_permille: int = 1250
    hist_ema_permille: int = 250
    # ... a client whose trace has a cosine above sim_low with another's loses weight, all of it
    # at sim_high; traces decay by trace_keep per round ...
    hist_sim_low_permille: int = 200
    hist_sim_high_permille: int = 450
    hist_trace_keep_permille: int = 950
    # ... and at most this many clients are tracked, each forgotten after this many rounds unseen.
    hist_clients_max: int = 4096
    hist_stale_rounds: int = 64
    # The similarity a client is judged by is its k-th largest cosine with another client (k =
    # this): a pair of honest clients with the same label mix resembles one another, a coalition
    # that pushes together has many partners.
    hist_sim_rank: int = 4
    # Per coordinate, the kept clients vote with their weight on the sign of their update; where
    # the agreement is below this permille of the total weight the aggregate's coordinate is
    # zeroed (mode 0), or negated (1: the robust learning rate); mode 2 zeroes coordinates where
    # the clients pushing the aggregate's way carry less than this share (fl/aggregate/
    # sign_vote.py).  0 turns the vote off.
    hist_sign_permille: int = 0
    hist_sign_mode: int = 0


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    lo: int = 0
    hi: int = 0
    choices: tuple[str, ...] = ()

    def check(self, value: int | str) -> None:
        if self.choices:
            if not isinstance(value, str) or value not in self.choices:
                raise RejectedError(f"{self.name}: {value!r} is not one of {self.choices}")
            return
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise RejectedError(
                f"{self.name}: {value!r} is not an integer in [{self.lo}, {self.hi}]"
            )


GOVERNABLE: tuple[ParamSpec, ...] = (
    ParamSpec("rule", choices=RULES),
    ParamSpec("updates_per_round", 1, ROUND_UPDATES_MAX),
    ParamSpec("round_deadline_ms", 1, 30 * DAY_MS),
    ParamSpec("updates_min", 1, ROUND_UPDATES_MAX),
    ParamSpec("update_norm_max", 1, NORM_MAX),
    ParamSpec("sample_weight_max", 1, SAMPLES_MAX),
    ParamSpec("trim_permille", 0, 499),
    ParamSpec("krum_byzantine_permille", 0, 499),
    ParamSpec("krum_keep_permille", 1, 1000),
    ParamSpec("clip_iterations", 1, 10),
    ParamSpec("clip_radius_permille", 1, 100_000),
    ParamSpec("clip_drop_permille", 0, 1_000_000),
    ParamSpec("hist_growth_permille", 1000, 10_000),
    ParamSpec("hist_ema_permille", 1, 1000),
    ParamSpec("hist_sim_low_permille", 0, 1000),
    ParamSpec("hist_sim_high_permille", 1, 1001),
    ParamSpec("hist_trace_keep_permille", 0, 960),  # history.TRACE_KEEP_MAX_PERMILLE
    ParamSpec("hist_clients_max", 1, 1 << 16),
    ParamSpec("hist_stale_rounds", 1, 1_000_000),
    ParamSpec("hist_sim_rank", 1, 64),
    ParamSpec("hist_sign_permille", 0, 1000),
    ParamSpec("hist_sign_mode", 0, 2),  # index into fl.aggregate.sign_vote.MODES
)

_SPECS = {spec.name: spec for spec in GOVERNABLE}


def spec_of(name: str) -> ParamSpec:
    spec = _SPECS.get(name)
    if spec is None:
        raise RejectedError(f"unknown parameter {name!r}")
    return spec


def with_value(params: Params, name: str, value: int | str) -> Params:
    """Return `params` with one governable entry changed, or raise RejectedError."""
    spec_of(name).check(value)
    updated = replace(params, **{name: value})  # type: ignore[arg-type]
    validate(updated)
    return updated


def validate(params: Params) -> None:
    """Check every entry and the relations between entries."""
    for spec in GOVERNABLE:
        spec.check(getattr(params, spec.name))
    if 0 < params.clip_drop_permille < 1000:
        raise RejectedError("clip_drop_permille must be 0 (never drop) or at least 1000")
    if params.hist_sim_low_permille >= params.hist_sim_high_permille:
        raise RejectedError("hist_sim_low_permille must be below hist_sim_high_permille")
    if params.updates_min > params.updates_per_round:
        raise RejectedError("updates_min must not exceed updates_per_round")


def encode_params(params: Params) -> list[Value]:
    return [[spec.name, getattr(params, spec.name)] for spec in GOVERNABLE]


def decode_params(value: Value) -> Params:
    items = expect_seq(value, "params", len(GOVERNABLE))
    if len(items) != len(GOVERNABLE):
        raise CodecError(f"params: expected {len(GOVERNABLE)} entries, got {len(items)}")
    kwargs: dict[str, int | str] = {}
    for spec, item in zip(GOVERNABLE, items, strict=True):
        name_v, raw = expect_list(item, 2, "params entry")
        if expect_str(name_v, "params name") != spec.name:
            raise CodecError(f"params: expected entry {spec.name!r}, got {name_v!r}")
        if not isinstance(raw, int | str):
            raise CodecError(f"params: {spec.name} must be an integer or a string")
        kwargs[spec.name] = raw
    known = {f.name for f in fields(Params)}
    if set(kwargs) != known:
        raise CodecError("params: table and dataclass disagree")  # our own bug surfaces here
    try:
        params = Params(**kwargs)  # type: ignore[arg-type]
        validate(params)
    except RejectedError as exc:
        raise CodecError(f"params: {exc}") from None
    return params
