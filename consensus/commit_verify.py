"""Verify a commit certificate alone: what a block-syncing node trusts instead of voting.

A commit for block B at height H proves B was decided if its signatures are valid precommits for
B's id at (H, commit.round) by distinct members of H's validator set holding more than 2/3 of
its voting power.  Nothing else (no state of the round) is needed.
"""

from collections.abc import Callable

from consensus.crypto import verify
from consensus.errors import CommitError
from consensus.types import PRECOMMIT, Commit, vote_sign_bytes
from consensus.validators import ValidatorSet

Verifier = Callable[[bytes, bytes, bytes], bool]


def verify_commit(
    chain_id: str,
    validators: ValidatorSet,
    height: int,
    block_id: bytes,
    commit: Commit,
    verifier: Verifier = verify,
) -> None:
    """Return if `commit` proves `block_id` at `height`; else raise CommitError with the reason."""
    if commit.height != height:
        raise CommitError(f"commit is for height {commit.height}, expected {height}")
    if commit.block_id != block_id:
        raise CommitError("commit is for another block id")
    message = vote_sign_bytes(chain_id, PRECOMMIT, height, commit.round, block_id)
    previous = -1
    power = 0
    for sig in commit.signatures:
        index = validators.index(sig.validator)
        if index is None:
            raise CommitError("commit signed by a non-validator")
        if index <= previous:
            raise CommitError("commit signatures are not in validator order or repeat one")
        previous = index
        if not verifier(sig.validator, message, sig.signature):
            raise CommitError("commit carries a bad signature")
        power += validators.validators[index].power
    if not validators.has_quorum(power):
        raise CommitError(f"commit power {power} of {validators.total_power} is not above 2/3")


class MemoVerifier:
    """ed25519 verification memoised on the full (key, message, signature) triple.

    A node sees the same signature several times (a vote, then the same precommit inside the
    next block's last commit, or relayed copies).  A forged signature is a different triple, so
    it is always verified for real.  Bounded: the memo is dropped when full.
    """

    def __init__(self, entries_max: int = 100_000, inner: Verifier = verify) -> None:
        self._memo: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._entries_max = entries_max
        self._inner = inner
        self.calls = 0
        self.misses = 0

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        self.calls += 1
        key = (public_key, message, signature)
        ok = self._memo.get(key)
        if ok is None:
            self.misses += 1
            ok = self._inner(public_key, message, signature)
            if len(self._memo) >= self._entries_max:
                self._memo.clear()
            self._memo[key] = ok
        return ok
