"""Validator sets, quorum arithmetic and the weighted round-robin proposer.

Proposer selection (CometBFT's): every validator carries a priority A(i).  One step adds each
validator's voting power to its priority, picks the largest (ties: lowest index, i.e. smallest
public key) as proposer and subtracts the total power from the winner.  Over `total` steps each
validator proposes in proportion to its power.  A height starts from the previous height's
priorities advanced by one step; round r of a height is the proposer of step r+1 from there.

`proposer(round)` memoizes, per set, the proposers of rounds 0..r computed so far and the
priorities after the last of them, so a height costs O(n) per round it actually reaches instead of
O(round x n) per call; the memo replays the iterative definition step by step, so it is that
definition (tests/consensus/test_engine_proposer.py checks it against a plain re-computation).
The engine only asks for rounds it has checked (our round + rounds_ahead_max, signed messages).

Quorums are by voting power: "2f+1" means more than 2/3 of the total, "f+1" more than 1/3.
Everything is integer arithmetic, so all nodes agree bit for bit.  Powers are bounded (POWER_MAX
each, TOTAL_POWER_MAX in all: CometBFT's int64max / 8), so sums and priorities fit int64.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from consensus.app import ValidatorUpdate
from consensus.codec import Value, encode, expect_bytes, expect_int, expect_list, expect_seq
from consensus.crypto import PUBLIC_KEY_BYTES, sha256
from consensus.errors import CodecError, InvariantError, ValidatorUpdateError
from consensus.types import POWER_MAX, TOTAL_POWER_MAX, VALIDATORS_MAX, power_problem

__all__ = ["POWER_MAX", "TOTAL_POWER_MAX", "Validator", "ValidatorSet", "power_problem"]


@dataclass(frozen=True, slots=True)
class Validator:
    public_key: bytes
    power: int
    priority: int = 0


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """Validators sorted by public key; priorities are state, not part of `hash()`."""

    validators: tuple[Validator, ...]
    total_power: int = field(init=False, compare=False, repr=False)
    _index: dict[bytes, int] = field(init=False, compare=False, repr=False, hash=False)
    _hash: bytes = field(init=False, compare=False, repr=False)
    # The proposer memo: proposer indices of rounds 0..len-1, and the priorities after them.
    _proposers: list[int] = field(init=False, compare=False, repr=False, hash=False)
    _cursor: list[int] = field(init=False, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        keys = [v.public_key for v in self.validators]
        if not keys:
            raise InvariantError("a validator set needs at least one validator")
        if keys != sorted(set(keys)):
            raise InvariantError("validators must be sorted by public key, without duplicates")
        total = sum(v.power for v in self.validators)
        # The fast test runs for every set (several per height); the message only on failure.
        if (
            total > TOTAL_POWER_MAX
            or len(keys) > VALIDATORS_MAX
            or any(not 0 < v.power <= POWER_MAX for v in self.validators)
        ):
            pairs = [(v.public_key, v.power) for v in self.validators]
            raise InvariantError(power_problem(pairs) or "validator powers out of bounds")
        object.__setattr__(self, "total_power", total)
        object.__setattr__(self, "_proposers", [])
        object.__setattr__(self, "_cursor", [v.priority for v in self.validators])
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(keys)})
        object.__setattr__(
            self, "_hash", sha256(encode([[v.public_key, v.power] for v in self.validators]))
        )

    @staticmethod
    def of(pairs: Sequence[tuple[bytes, int]]) -> "ValidatorSet":
        """A fresh set (genesis): zero priorities, sorted by key."""
        return ValidatorSet(tuple(Validator(pk, p) for pk, p in sorted(pairs)))

    def __len__(self) -> int:
        return len(self.validators)

    def index(self, public_key: bytes) -> int | None:
        return self._index.get(public_key)

    def power_of(self, public_key: bytes) -> int:
        i = self._index.get(public_key)
        return 0 if i is None else self.validators[i].power

    def hash(self) -> bytes:
        return self._hash

    def has_quorum(self, power: int) -> bool:
        """More than 2/3 of the voting power (the paper's 2f+1)."""
        return power * 3 > self.total_power * 2

    def has_one_third(self, power: int) -> bool:
        """More than 1/3 of the voting power (the paper's f+1): at least one honest member."""
        return power * 3 > self.total_power

    # ---- proposer selection ------------------------------------------------------------------

    def _step(self, priorities: list[int]) -> int:
        best = 0
        for i, v in enumerate(self.validators):
            priorities[i] += v.power
            if priorities[i] > priorities[best]:
                best = i
        priorities[best] -= self.total_power
        return best

    def proposer(self, round_: int) -> bytes:
        """The proposer of step round_+1 from this set's priorities (memoized, see the top)."""
        proposers = self._proposers
        while len(proposers) <= round_:
            proposers.append(self._step(self._cursor))
        return self.validators[proposers[round_]].public_key

    def advanced(self) -> "ValidatorSet":
        """The same validators with priorities advanced by one step (the next height's start)."""
        priorities = [v.priority for v in self.validators]
        self._step(priorities)
        return ValidatorSet(
            tuple(
                Validator(v.public_key, v.power, p)
                for v, p in zip(self.validators, priorities, strict=True)
            )
        )

    def updated(self, updates: Sequence[ValidatorUpdate]) -> "ValidatorSet":
        """Apply the app's updates (power 0 removes).  Updates breaking a bound (key size, power
        per validator, total power, set size, an empty set) raise ValidatorUpdateError naming the
        validator: the app broke its invariant, the chain cannot go on with them.

        Newcomers start at -1.125 * total so joining cannot jump the proposer queue; priorities
        are then centred around zero so they stay bounded across many changes.
        """
        powers = {v.public_key: v.power for v in self.validators}
        priorities = {v.public_key: v.priority for v in self.validators}
        for u in updates:
            if len(u.public_key) != PUBLIC_KEY_BYTES or not 0 <= u.power <= POWER_MAX:
                raise ValidatorUpdateError(
                    f"validator update {u.public_key.hex()[:16]}: power {u.power} outside "
                    f"[0, POWER_MAX = {POWER_MAX}] or key not {PUBLIC_KEY_BYTES} bytes"
                )
            if u.power == 0:
                powers.pop(u.public_key, None)
            else:
                powers[u.public_key] = u.power
        if not powers:
            raise ValidatorUpdateError("validator updates would remove every validator")
        keys = sorted(powers)
        total = sum(powers.values())
        if total > TOTAL_POWER_MAX or len(keys) > VALIDATORS_MAX:  # each power checked above
            problem = power_problem([(k, powers[k]) for k in keys])
            raise ValidatorUpdateError(f"validator updates: {problem}")
        newcomer = -(total + total // 8)
        raw = [priorities.get(k, newcomer) for k in keys]
        # Removing a heavy validator can leave priorities spread far wider than the new, smaller
        # total; squeeze the spread to at most 2 * total (as CometBFT does), so priorities stay
        # within a few totals of zero and fit int64 whatever sequence of updates the app sends.
        spread = max(raw) - min(raw)
        limit = 2 * total
        if spread > limit:
            divisor = -(-spread // limit)
            raw = [p // divisor for p in raw]
        centre = sum(raw) // len(raw)
        return ValidatorSet(
            tuple(Validator(k, powers[k], p - centre) for k, p in zip(keys, raw, strict=True))
        )

    # ---- canonical encoding (with priorities: it is node state) --------------------------------

    def to_value(self) -> list[Value]:
        return [[v.public_key, v.power, v.priority] for v in self.validators]

    @staticmethod
    def from_value(value: Value) -> "ValidatorSet":
        items = []
        for item in expect_seq(value, "validators", 10_000):
            f = expect_list(item, 3, "validator")
            items.append(
                Validator(
                    expect_bytes(f[0], "validator.public_key", PUBLIC_KEY_BYTES),
                    expect_int(f[1], "validator.power", 1, POWER_MAX),
                    expect_int(f[2], "validator.priority"),
                )
            )
        try:
            return ValidatorSet(tuple(items))
        except InvariantError as exc:
            raise CodecError(f"validators: {exc}") from None
