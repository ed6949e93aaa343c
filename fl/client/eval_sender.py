"""How `fedchain eval` sends a client's update: the way the chain wants it.

A single-phase chain takes one submit_update.  A commit-reveal chain (`commit_blocks` > 0)
takes a commitment while the round's commit phase is open and the matching reveal once the
reveal phase opens, so the sender holds each reveal until the harness releases it (the honest
first, then the attackers, who may withhold theirs: fl/client/attacks/withhold.py).
"""

import hashlib

import numpy as np

from consensus.crypto import PrivateKey
from fl.client.attacks.view import FloatArray
from fl.client.errors import ClientError
from fl.client.sdk import RemoteModel, build_commit_reveal, build_update
from fl.client.transport import BLOCK_INTERVAL_MS, InProcessTransport, SubmitResult
from fl.params import Params


class RoundSender:
    """Sends each client's update the way the chain wants it: one submit_update, or, on a
    commit-reveal chain (`commit_blocks` > 0), its commitment now and its reveal (held here)
    once the reveal phase opens.  Salts are derived from the seed, so a run is reproducible."""

    def __init__(
        self,
        transport: InProcessTransport,
        keys: list[PrivateKey],
        nonces: list[int],
        seed: int,
        bits: int,
    ) -> None:
        self.transport = transport
        self.chain_id = transport.chain_id()
        self.keys = keys
        self.nonces = nonces
        self.seed = seed
        self.bits = bits
        self.commit_blocks = transport.app.state.incentives.econ.params.commit_blocks
        self.held: dict[int, bytes] = {}  # client index -> its reveal, not yet sent

    @property
    def commit_reveal(self) -> bool:
        return self.commit_blocks > 0

    def send(
        self,
        i: int,
        model: RemoteModel,
        delta: FloatArray,
        samples: int,
        params: Params,
        rng: np.random.Generator | None,
        bits: int | None = None,
    ) -> tuple[SubmitResult, bytes]:
        """Admit client i's update (its commitment on a commit-reveal chain); returns the
        admission and the transaction that carries the update (the held reveal, if any)."""
        bits = self.bits if bits is None else bits
        key, nonce = self.keys[i], self.nonces[i]
        if not self.commit_reveal:
            tx = build_update(key, self.chain_id, nonce, model, delta, samples, params, bits, rng)
            result = self.transport.submit(tx)
        else:
            salt = hashlib.sha256(f"eval-salt/{self.seed}/{model.round}/{i}".encode()).digest()
            commit, tx = build_commit_reveal(
                key, self.chain_id, nonce, model, delta, samples, params, salt, bits, rng
            )
            result = self.transport.submit(commit)
            if result.accepted:
                self.held[i] = tx
        self.nonces[i] += result.accepted
        return result, tx

    def open_reveals(self, rnd: int) -> None:
        """Produce blocks until round `rnd`'s reveal phase is open."""
        state = self.transport.app.state
        for _ in range(self.commit_blocks + 2):
            if state.round != rnd or state.reveal_opened_height >= 0:
                return
            self.transport.produce_block()
        raise ClientError(f"round {rnd}: the reveal phase did not open")

    def reveal(self, i: int) -> None:
        result = self.transport.submit(self.held.pop(i))
        if not result.accepted:
            raise ClientError(f"client {i}: reveal refused: {result.reason}")
        self.nonces[i] += 1

    def phase_blocks(self, params: Params) -> int:
        """Blocks a round may take beyond a single-phase one: the commit phase, and the reveal
        deadline when a commitment is withheld."""
        if not self.commit_reveal:
            return 0
        return self.commit_blocks + params.round_deadline_ms // BLOCK_INTERVAL_MS
