"""The committed chain as the engine needs it between heights, and the LastSigned guard.

`ChainState` is everything that decides whether a block for `height` is valid: the validator
sets of this and the next height (updates returned by the app at H apply at H+2), the previous
block id/time/commit, the app hash after H-1 (header H carries it), and, for evidence, the sets
and the already-punished equivocations of the last `EVIDENCE_AGE_HEIGHTS` heights.  The node
stores it after every block (block -> state -> app commit) and rebuilds the engine from it.
"""

from dataclasses import dataclass

from consensus.app import Genesis, ValidatorUpdate
from consensus.codec import (
    Value,
    decode,
    encode,
    expect_bytes,
    expect_int,
    expect_list,
    expect_seq,
    expect_str,
)
from consensus.crypto import HASH_BYTES, PUBLIC_KEY_BYTES
from consensus.errors import GenesisError, InvariantError, ValidatorUpdateError
from consensus.types import HEIGHT_MAX, ROUND_MAX, Block, Commit, power_problem
from consensus.validators import ValidatorSet

EVIDENCE_AGE_HEIGHTS = 16

EvidenceKey = tuple[bytes, int, int, int]  # validator, height, round, vote type


@dataclass(frozen=True, slots=True)
class LastSigned:
    """The highest (height, round, step) this validator signed and exactly what it signed.

    Signing the same bytes again is allowed (ed25519 is deterministic: same signature), so a
    restarted node can replay its WAL; anything else at or below this point is refused.
    """

    height: int
    round: int
    step: int
    sign_bytes: bytes

    def encode(self) -> bytes:
        return encode([self.height, self.round, self.step, self.sign_bytes])

    @staticmethod
    def decode(data: bytes) -> "LastSigned":
        f = expect_list(decode(data), 4, "last_signed")
        return LastSigned(
            expect_int(f[0], "last_signed.height", 0, HEIGHT_MAX),
            expect_int(f[1], "last_signed.round", 0, ROUND_MAX),
            expect_int(f[2], "last_signed.step", 0, 2),
            expect_bytes(f[3], "last_signed.sign_bytes", size_max=1024),
        )


@dataclass(frozen=True, slots=True)
class ChainState:
    chain_id: str
    initial_height: int
    height: int  # the height being decided
    validators: ValidatorSet
    next_validators: ValidatorSet
    last_block_id: bytes
    last_commit: Commit | None
    last_time_ms: int
    app_hash: bytes
    # (height, set) for heights height-EVIDENCE_AGE_HEIGHTS .. height-1, oldest first.
    past_validators: tuple[tuple[int, ValidatorSet], ...] = ()
    committed_evidence: tuple[EvidenceKey, ...] = ()

    @staticmethod
    def from_genesis(
        genesis: Genesis, app_hash: bytes, overrides: tuple[ValidatorUpdate, ...] = ()
    ) -> "ChainState":
        """The chain before its first block.  A genesis breaking a bound raises GenesisError
        (configuration); `overrides`, the app's init_chain answer, breaking one raise
        ValidatorUpdateError (the app's invariant)."""
        problem = genesis.problem()
        if problem is not None:
            raise GenesisError(f"genesis: {problem}")
        if overrides:
            pairs = [(u.public_key, u.power) for u in overrides if u.power > 0]
            keys = [pk for pk, _ in pairs]
            problem = power_problem(pairs)
            if problem is None and len(set(keys)) != len(keys):
                problem = "a public key appears twice"
            if problem is None and any(u.power < 0 for u in overrides):
                problem = "negative power"
            if problem is not None:
                raise ValidatorUpdateError(f"init_chain validator overrides: {problem}")
        else:
            pairs = [(v.public_key, v.power) for v in genesis.validators]
        validators = ValidatorSet.of(pairs)
        return ChainState(
            chain_id=genesis.chain_id,
            initial_height=genesis.initial_height,
            height=genesis.initial_height,
            validators=validators,
            next_validators=validators,
            last_block_id=b"",
            last_commit=None,
            last_time_ms=genesis.genesis_time_ms - 1,
            app_hash=app_hash,
        )

    def validators_at(self, height: int) -> ValidatorSet | None:
        if height == self.height:
            return self.validators
        for h, vs in self.past_validators:
            if h == height:
                return vs
        return None

    def after_block(
        self,
        block: Block,
        commit: Commit,
        app_hash: bytes,
        updates: tuple[ValidatorUpdate, ...],
    ) -> "ChainState":
        """The state for height+1 once `block` (decided by `commit`) has been executed.

        `updates` come from the app's finalize_block; ones breaking a power bound raise
        ValidatorUpdateError (ValidatorSet.updated) naming the validator and the bound."""
        if block.header.height != self.height or commit.block_id != block.id():
            raise InvariantError("after_block: block or commit is not for this height")
        advanced = self.validators.advanced()
        carry = [(v.public_key, v.power) for v in self.next_validators.validators]
        carry += [
            (v.public_key, 0)
            for v in advanced.validators
            if self.next_validators.index(v.public_key) is None
        ]
        current = advanced.updated([ValidatorUpdate(pk, p) for pk, p in carry])
        nxt = self.next_validators.updated(updates) if updates else self.next_validators
        oldest = self.height + 1 - EVIDENCE_AGE_HEIGHTS
        past = tuple((h, vs) for h, vs in self.past_validators if h >= oldest)
        past += ((self.height, self.validators),)
        committed = tuple(k for k in self.committed_evidence if k[1] >= oldest)
        committed += tuple(e.key() for e in block.evidence)
        return ChainState(
            chain_id=self.chain_id,
            initial_height=self.initial_height,
            height=self.height + 1,
            validators=current,
            next_validators=nxt,
            last_block_id=commit.block_id,
            last_commit=commit,
            last_time_ms=block.header.time_ms,
            app_hash=app_hash,
            past_validators=past,
            committed_evidence=committed,
        )

    # ---- canonical encoding, for the node's state store ----------------------------------------

    def to_value(self) -> list[Value]:
        return [
            self.chain_id,
            self.initial_height,
            self.height,
            self.validators.to_value(),
            self.next_validators.to_value(),
            self.last_block_id,
            None if self.last_commit is None else self.last_commit.to_value(),
            self.last_time_ms,
            self.app_hash,
            [[h, vs.to_value()] for h, vs in self.past_validators],
            [list(k) for k in self.committed_evidence],
        ]

    def encode(self) -> bytes:
        return encode(self.to_value())

    @staticmethod
    def decode(data: bytes) -> "ChainState":
        f = expect_list(decode(data), 11, "chain_state")
        past = []
        for item in expect_seq(f[9], "chain_state.past_validators", EVIDENCE_AGE_HEIGHTS):
            pair = expect_list(item, 2, "chain_state.past_validator_set")
            past.append(
                (
                    expect_int(pair[0], "past.height", 1, HEIGHT_MAX),
                    ValidatorSet.from_value(pair[1]),
                )
            )
        committed = []
        for item in expect_seq(f[10], "chain_state.committed_evidence", 100_000):
            k = expect_list(item, 4, "evidence_key")
            committed.append(
                (
                    expect_bytes(k[0], "key.validator", PUBLIC_KEY_BYTES),
                    expect_int(k[1], "key.height", 1, HEIGHT_MAX),
                    expect_int(k[2], "key.round", 0, ROUND_MAX),
                    expect_int(k[3], "key.type", 1, 2),
                )
            )
        return ChainState(
            chain_id=expect_str(f[0], "chain_state.chain_id", 64),
            initial_height=expect_int(f[1], "chain_state.initial_height", 1, HEIGHT_MAX),
            height=expect_int(f[2], "chain_state.height", 1, HEIGHT_MAX),
            validators=ValidatorSet.from_value(f[3]),
            next_validators=ValidatorSet.from_value(f[4]),
            last_block_id=expect_bytes(f[5], "chain_state.last_block_id", size_max=HASH_BYTES),
            last_commit=None if f[6] is None else Commit.from_value(f[6]),
            last_time_ms=expect_int(f[7], "chain_state.last_time_ms", -1),
            app_hash=expect_bytes(f[8], "chain_state.app_hash", size_max=HASH_BYTES),
            past_validators=tuple(past),
            committed_evidence=tuple(committed),
        )
