"""The whole application state, its app hash and its snapshot encoding.

The state is a mutable object owned by the application (one task drives it, so no locks).
Its app hash is built from named sections:

    app_hash = sha256(encode(["fedchain/app/v1", height, [[name, sha256(section)], ...]]))

Sections are listed in `SECTIONS` order; the incentives and governance code add their own
("economics", "governance") by appending to `section_values`.  Everything is encoded as fixed
order arrays; maps are emitted sorted by key so dict insertion order never reaches a hash.
The hashed form names each pending delta by its transaction hash (which commits to its bytes);
the snapshot carries the deltas themselves.
"""

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from consensus.codec import (
    Value,
    encode,
    expect_bytes,
    expect_int,
    expect_list,
    expect_seq,
    expect_str,
)
from consensus.crypto import HASH_BYTES, PUBLIC_KEY_BYTES, sha256
from consensus.errors import CodecError
from fl.aggregate.history import RuleHistory
from fl.economics.layer import Incentives
from fl.fixed import DELTA_ABS_MAX, model_from_bytes, model_to_bytes, squared_norm
from fl.model import ModelVersion, Shapes, decode_shapes, encode_shapes, parameter_count
from fl.params import Params, decode_params, encode_params

APP_DOMAIN = "fedchain/app/v1"
SNAPSHOT_DOMAIN = "fedchain/snapshot/v1"
MODEL_HISTORY_MAX = 8  # model versions kept for `query("model/<v>")`
RECORD_ROUNDS = 16  # rounds whose per-update records are kept for `query("update/<hash>")`
ITEMS_MAX = 10_000_000


@dataclass(slots=True)
class Account:
    nonce: int = 0

    def encode(self) -> Value:
        return [self.nonce]


@dataclass(frozen=True, slots=True)
class Pending:
    """An accepted update waiting for its round to close (delta in model units, int32).

    `squared_norm` is the delta's, computed when the update was checked; the round close reuses
    it instead of summing 100k squares again per update (not part of the state's encoding)."""

    client: bytes
    tx_hash: bytes
    samples: int
    delta: npt.NDArray[np.int32]
    squared_norm: int


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    round: int
    client: bytes
    samples: int
    status: str  # "pending" | "accepted" | "flagged" | "unused"
    score: int = 0
    flag: str = ""

    def encode(self) -> Value:
        return [self.round, self.client, self.samples, self.status, self.score, self.flag]

    @classmethod
    def decode(cls, value: Value) -> "UpdateRecord":
        rnd, client, samples, status, score, flag = expect_list(value, 6, "update record")
        return cls(
            expect_int(rnd, "record round", 0),
            expect_bytes(client, "record client", PUBLIC_KEY_BYTES),
            expect_int(samples, "record samples", 0),
            expect_str(status, "record status"),
            expect_int(score, "record score", 0, 1000),
            expect_str(flag, "record flag"),
        )


@dataclass(slots=True)
class FLState:
    chain_id: str
    height: int
    params: Params
    model: ModelVersion
    round: int = 0
    round_opened_height: int = 0
    pending: list[Pending] = field(default_factory=list)
    pending_by_client: dict[bytes, int] = field(default_factory=dict)
    accounts: dict[bytes, Account] = field(default_factory=dict)
    records: dict[bytes, UpdateRecord] = field(default_factory=dict)
    history: list[ModelVersion] = field(default_factory=list)  # oldest first, includes current
    # Summary of the last closed round (canonical value), for `query("round")`.
    last_outcome: Value = None
    # Stake, rewards, slashing and governance (fl/economics, fl/governance).
    incentives: Incentives = field(default_factory=Incentives)
    # Commit-reveal rounds (fl/rounds.py): client -> commitment for the open round, and the
    # height whose end opened the reveal phase (-1 while commitments are taken, or single phase).
    commits: dict[bytes, bytes] = field(default_factory=dict)
    reveal_opened_height: int = -1
    # What the history aggregation rule carries between rounds (fl/aggregate/history.py).
    rule_history: RuleHistory = field(default_factory=RuleHistory)
    # Chain time (BlockInfo.time_ms, the BFT block time): of the last finalized block (genesis
    # time before block 1), and of the blocks whose end opened the round and its reveal phase
    # (-1: no reveal phase open).  Round deadlines count from these (fl/rounds.py).
    time_ms: int = 0
    round_opened_ms: int = 0
    reveal_opened_ms: int = -1
    # Hashing memo, not state: key -> (nonce, encode([key, [nonce]])); see `_accounts_bytes`.
    _account_items: dict[bytes, tuple[int, bytes]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def shapes(self) -> Shapes:
        return self.model.shapes

    def account(self, key: bytes) -> Account:
        return self.accounts.get(key, Account())

    def round_deadline_ms(self) -> int:
        """The chain time at which the open round (its reveal phase, if one is open) ends."""
        opened = self.reveal_opened_ms if self.reveal_opened_ms >= 0 else self.round_opened_ms
        return opened + self.params.round_deadline_ms

    # -- hashing ------------------------------------------------------------------------------

    def section_values(self) -> list[tuple[str, Value]]:
        return [
            ("fl", self._fl_section()),
            ("params", encode_params(self.params)),
            ("accounts", [[k, self.accounts[k].encode()] for k in sorted(self.accounts)]),
            *self.incentives.sections(),
            ("rule_history", self.rule_history.encode()),
        ]

    def section_bytes(self) -> list[tuple[str, bytes]]:
        """`encode(value)` of each section of `section_values`, the accounts one from a memo."""
        return [
            ("fl", encode(self._fl_section())),
            ("params", encode(encode_params(self.params))),
            ("accounts", self._accounts_bytes()),
            *((name, encode(value)) for name, value in self.incentives.sections()),
            ("rule_history", encode(self.rule_history.encode())),
        ]

    def _accounts_bytes(self) -> bytes:
        """Exactly `encode([[k, [nonce]] for k in sorted(accounts)])`, re-encoding only the
        accounts whose nonce changed since the last call.  A msgpack array is its header followed
        by its items' encodings, so the memoized items are concatenated in sorted key order.
        The memo is checked against the live nonce on every call, so it cannot go stale however
        an account is mutated; it only skips encode() for unchanged ones."""
        memo = self._account_items
        if len(memo) > len(self.accounts):  # an account vanished (restore): start over
            memo.clear()
        parts = [_array_header(len(self.accounts))]
        for key in sorted(self.accounts):
            nonce = self.accounts[key].nonce
            item = memo.get(key)
            if item is None or item[0] != nonce:
                item = (nonce, encode([key, [nonce]]))
                memo[key] = item
            parts.append(item[1])
        return b"".join(parts)

    def _fl_section(self) -> Value:
        return [
            self.model.version,
            self.model.hash,
            [m.hash for m in self.history],
            self.round,
            self.round_opened_height,
            [[p.client, p.tx_hash, p.samples] for p in self.pending],
            [[h, self.records[h].encode()] for h in sorted(self.records)],
            self.last_outcome,
            [[k, self.commits[k]] for k in sorted(self.commits)],
            self.reveal_opened_height,
            [self.time_ms, self.round_opened_ms, self.reveal_opened_ms],
        ]

    def app_hash(self) -> bytes:
        sections: list[Value] = [[name, sha256(data)] for name, data in self.section_bytes()]
        return sha256(encode([APP_DOMAIN, self.chain_id, self.height, sections]))

    # -- snapshot -----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return encode(
            [
                SNAPSHOT_DOMAIN,
                self.chain_id,
                self.height,
                encode_params(self.params),
                encode_shapes(self.shapes),
                [[m.version, model_to_bytes(m.weights)] for m in self.history],
                self.round,
                self.round_opened_height,
                [
                    [p.client, p.tx_hash, p.samples, p.delta.astype("<i4").tobytes()]
                    for p in self.pending
                ],
                [[k, self.accounts[k].encode()] for k in sorted(self.accounts)],
                [[h, self.records[h].encode()] for h in sorted(self.records)],
                self.last_outcome,
                self.incentives.encode(),
                [[k, self.commits[k]] for k in sorted(self.commits)],
                self.reveal_opened_height,
                self.rule_history.encode(),
                [self.time_ms, self.round_opened_ms, self.reveal_opened_ms],
            ]
        )


def _array_header(length: int) -> bytes:
    """The msgpack array header canonical encode() emits for `length` items."""
    if length < 16:
        return bytes([0x90 | length])
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


def restore_state(value: Value) -> FLState:
    """Rebuild a state from a decoded snapshot; raises CodecError on any inconsistency."""
    (
        domain,
        chain_id,
        height,
        params_v,
        shapes_v,
        history_v,
        rnd,
        opened,
        pending_v,
        accounts_v,
        records_v,
        last_outcome,
        incentives_v,
        commits_v,
        reveal_opened,
        rule_history_v,
        times_v,
    ) = expect_list(value, 17, "snapshot")
    if domain != SNAPSHOT_DOMAIN:
        raise CodecError("not an FL snapshot")
    shapes = decode_shapes(shapes_v)
    size = parameter_count(shapes)
    history: list[ModelVersion] = []
    for item in expect_seq(history_v, "model history", MODEL_HISTORY_MAX):
        version, weights_v = expect_list(item, 2, "model version")
        weights = model_from_bytes(expect_bytes(weights_v, "model weights", size * 8))
        history.append(ModelVersion.build(expect_int(version, "version", 0), shapes, weights))
    if not history:
        raise CodecError("snapshot has no model")
    time_v, round_opened_v, reveal_opened_v = expect_list(times_v, 3, "chain times")
    state = FLState(
        chain_id=expect_str(chain_id, "chain id"),
        height=expect_int(height, "height", 0),
        params=decode_params(params_v),
        model=history[-1],
        round=expect_int(rnd, "round", 0),
        round_opened_height=expect_int(opened, "round opened height", 0),
        history=history,
        last_outcome=last_outcome,
        incentives=Incentives.decode(incentives_v),
        reveal_opened_height=expect_int(reveal_opened, "reveal opened height", -1),
        rule_history=RuleHistory.decode(rule_history_v),
        time_ms=expect_int(time_v, "time", 0),
        round_opened_ms=expect_int(round_opened_v, "round opened time", 0),
        reveal_opened_ms=expect_int(reveal_opened_v, "reveal opened time", -1),
    )
    for item in expect_seq(commits_v, "commits", ITEMS_MAX):
        client, digest = expect_list(item, 2, "commit")
        state.commits[expect_bytes(client, "commit client", PUBLIC_KEY_BYTES)] = expect_bytes(
            digest, "commitment", HASH_BYTES
        )
    for item in expect_seq(pending_v, "pending", ITEMS_MAX):
        client, tx_hash, samples, delta_v = expect_list(item, 4, "pending update")
        delta = np.frombuffer(expect_bytes(delta_v, "pending delta", size * 4), dtype="<i4")
        if delta.size and int(np.abs(delta.astype(np.int64)).max()) > DELTA_ABS_MAX:
            raise CodecError("pending delta out of range")
        p = Pending(
            expect_bytes(client, "pending client", PUBLIC_KEY_BYTES),
            expect_bytes(tx_hash, "pending tx hash", HASH_BYTES),
            expect_int(samples, "pending samples", 1),
            delta.astype(np.int32),
            squared_norm(delta),
        )
        state.pending_by_client[p.client] = len(state.pending)
        state.pending.append(p)
    for item in expect_seq(accounts_v, "accounts", ITEMS_MAX):
        key, account_v = expect_list(item, 2, "account")
        (nonce,) = expect_list(account_v, 1, "account value")
        state.accounts[expect_bytes(key, "account key", PUBLIC_KEY_BYTES)] = Account(
            expect_int(nonce, "nonce", 0)
        )
    for item in expect_seq(records_v, "records", ITEMS_MAX):
        key, record_v = expect_list(item, 2, "record")
        state.records[expect_bytes(key, "record key", HASH_BYTES)] = UpdateRecord.decode(record_v)
    return state
