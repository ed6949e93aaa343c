"""Engine configuration, the deliberately broken rules (mutants) and the injected signer."""

from dataclasses import dataclass
from typing import Protocol

from consensus.crypto import PrivateKey
from consensus.errors import InvariantError
from consensus.types import TIME_MS_MAX

# Deliberately broken rules, only for proving the simulator's checker catches them.  Each is one
# small branch in engine.py marked `# MUTANT <name>`; tests/consensus/test_engine_mutants.py shows
# that every one of them changes the engine's behaviour on some scenario.
MUTANT_DESCRIPTIONS: dict[str, str] = {
    "quorum2f": "quorums of 2f voting power instead of 2f+1",
    "nolock": "prevote ignores the lock (L23 and L29 always true)",
    "noguard": "no LastSigned guard: may sign different messages at one (height, round, step)",
    "skip_on_f": "round skip (L55) on f of the power of a higher round instead of f+1",
    "decide_current_round_only": "decide (L49) only on precommits of the current round",
    "no_precommit_nil": "no precommit nil on 2f+1 nil prevotes (L44 missing)",
    "fixed_timeouts": "timeouts do not grow with the round (no + round * delta)",
    "valid_only_on_lock": "validValue/validRound (L42-L43) set only when locking (L36-L41)",
    "trust_pol_round": "L28 prevotes a re-proposal without 2f+1 prevotes at its POL round",
}
MUTANTS: tuple[str, ...] = ("", *MUTANT_DESCRIPTIONS)

# Past this round the 10%-per-round relaxation of the message delay exceeds any time anyway
# (1.1^512 > 10^21), so the exponent is capped and the arithmetic stays small.
_DELAY_GROWTH_ROUNDS_MAX = 512


class Signer(Protocol):
    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class KeySigner:
    """A Signer over an in-process ed25519 key (the node may inject a remote signer instead)."""

    key: PrivateKey

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    propose_timeout_ms: int = 1_000
    propose_timeout_delta_ms: int = 500
    prevote_timeout_ms: int = 500
    prevote_timeout_delta_ms: int = 250
    precommit_timeout_ms: int = 500
    precommit_timeout_delta_ms: int = 250
    block_bytes_max: int = 64 * 1024 * 1024
    block_txs_max: int = 10_000
    block_evidence_max: int = 100
    evidence_pool_max: int = 1_000
    # Messages this many heights ahead are a protocol violation (penalized), closer ones a hint
    # to sync; rounds this far ahead of ours are ignored (bounds the message log).
    future_heights_max: int = 100_000
    rounds_ahead_max: int = 64
    # No honest validator reaches this round: with the default timeouts (which grow by the
    # round) round 10,000 comes after more than a year without a decision.  A peer message for
    # a later round is a protocol violation, penalized before its signature is even checked.
    peer_round_max: int = 10_000
    # Proposer-based timestamps (PBTS): honest clocks differ by at most the precision, and a
    # proposal reaches every validator within the message delay (relaxed by 10% per round).
    timestamp_precision_ms: int = 500
    message_delay_ms: int = 2_000
    mutant: str = ""

    def __post_init__(self) -> None:
        if self.mutant not in MUTANTS:
            raise InvariantError(f"mutant: unknown {self.mutant!r}")
        for name in ("propose_timeout_ms", "prevote_timeout_ms", "precommit_timeout_ms"):
            if getattr(self, name) <= 0:
                raise InvariantError(f"{name}: must be positive")
        for name in ("timestamp_precision_ms", "message_delay_ms", "peer_round_max"):
            if getattr(self, name) < 0:
                raise InvariantError(f"{name}: must not be negative")

    def timeout_ms(self, step: int, round_: int) -> int:
        """init + round * delta, as in the paper's timeoutX(r)."""
        if self.mutant == "fixed_timeouts":  # MUTANT fixed_timeouts
            round_ = 0
        if step == 0:
            return self.propose_timeout_ms + round_ * self.propose_timeout_delta_ms
        if step == 1:
            return self.prevote_timeout_ms + round_ * self.prevote_timeout_delta_ms
        return self.precommit_timeout_ms + round_ * self.precommit_timeout_delta_ms

    def message_delay_at_ms(self, round_: int) -> int:
        """MSGDELAY(round): the configured delay grown by 10% per round, in integers.

        A message delay set too small would make every proposal untimely forever; growing it
        with the round (as CometBFT's adaptive synchrony parameters do) restores liveness after
        enough rounds, while round 0 keeps the tight bound.
        """
        r = min(max(round_, 0), _DELAY_GROWTH_ROUNDS_MAX)
        grown: int = self.message_delay_ms * pow(11, r) // pow(10, r)
        return min(grown, TIME_MS_MAX)

    def timely(self, time_ms: int, received_ms: int, round_: int) -> bool:
        """PBTS's timely predicate: a proposal with block time `time_ms`, received at local time
        `received_ms` in `round_`, fits honest clocks:
            time - PRECISION <= received <= time + MSGDELAY(round) + PRECISION.
        A negative `received_ms` means the reception time is unknown (a WAL record written
        before receptions were stamped, a unit test): it counts as timely, so replaying such a
        record repeats the prevote signed before the crash instead of contradicting it."""
        if received_ms < 0:
            return True
        precision = self.timestamp_precision_ms
        return (
            time_ms - precision
            <= received_ms
            <= time_ms + self.message_delay_at_ms(round_) + precision
        )
