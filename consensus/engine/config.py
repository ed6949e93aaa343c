"""Engine configuration and the injected signer."""

from dataclasses import dataclass
from typing import Protocol

from consensus.crypto import PrivateKey
from consensus.errors import InvariantError

# Deliberately broken rules, only for proving the simulator's checker catches them.
MUTANTS = ("", "quorum2f", "nolock")


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
    mutant: str = ""

    def __post_init__(self) -> None:
        if self.mutant not in MUTANTS:
            raise InvariantError(f"mutant: unknown {self.mutant!r}")
        for name in ("propose_timeout_ms", "prevote_timeout_ms", "precommit_timeout_ms"):
            if getattr(self, name) <= 0:
                raise InvariantError(f"{name}: must be positive")

    def timeout_ms(self, step: int, round_: int) -> int:
        """init + round * delta, as in the paper's timeoutX(r)."""
        if step == 0:
            return self.propose_timeout_ms + round_ * self.propose_timeout_delta_ms
        if step == 1:
            return self.prevote_timeout_ms + round_ * self.prevote_timeout_delta_ms
        return self.precommit_timeout_ms + round_ * self.precommit_timeout_delta_ms
