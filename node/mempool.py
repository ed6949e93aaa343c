"""The mempool: transactions that passed check_tx and wait for a block.

Theory of operation
-------------------
`add(tx)` admits a transaction only if it is new (not pending, not recently committed), within
the size bound, accepted by the application's `check_tx`, within its sender's budget (count and
bytes) and at most `nonce_gap_max` nonces past the sender's next nonce; otherwise it raises
MempoolError with a code and a reason a person can read.

Two priority classes.  A tx is *ready* when it can run in the next block: its nonce is the
sender's next one (check_tx reports the gap), or every nonce between the next one and its own
is pending here too.  Otherwise it is *gapped*: it cannot run until someone supplies the
missing nonces, which an attacker never does (issue 13: 15 gapped txs from each of many fresh
keys filled every pool for 75 s and more, and every honest submission got 503).  So:
  * only ready txs are reaped for proposals;
  * when the pool is full, a ready tx evicts gapped ones (oldest gapped first); a gapped tx
    never evicts anything;
  * a tx that stays gapped for `gapped_ttl_ms` is dropped, and every tx expires after
    `ttl_ms` or `ttl_heights` blocks.
Txs without a sender (apps without accounts, e.g. the kv app) are always ready and have no
per-sender budget.

`reap(txs_max, bytes_max)` returns ready txs in arrival order, except that one sender's txs
always come out in nonce order: a tx's sort key is the larger of its own arrival and the key
of the same sender's previous nonce, so a low nonce that arrived late pulls its successors after
it rather than letting them jump ahead.

After a block commits, `update(committed_hashes)` removes its txs, remembers their hashes in a
bounded cache (so a replayed tx is refused without touching the app), expires what is too old,
and rechecks the rest against the new state, dropping those that became invalid (e.g. an FL
update for a round that just closed) and refreshing every sender's nonce gap.  A block with txs
always triggers the recheck; an empty block does once `recheck_interval_ms` has passed since the
last one (a round that closes on its deadline height, or a sender whose txs committed through
another node, changes what check_tx answers without any tx here).  Time comes from the injected
`clock`; heights are counted by `update` calls.  Everything runs on the event-loop thread.

Every tx that passed check_tx and then leaves (refused by the policy, evicted, expired, dropped
by a recheck, committed) or that check_tx refused is handed to `release` (the app's
`release_tx`): an app that memoizes signature checks would otherwise keep the bytes of every
tx it ever checked until its memo's own bound, which a stranger fills with txs it knows will
be refused (60 distinct 4 MiB bad-signature submissions held 240 MiB on a validator).
"""

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus import txid
from consensus.app import CheckTxResult
from consensus.txid import tx_id
from node.config import MempoolConfig
from node.errors import MempoolError

# The defaults are written once, in node/config.py [mempool]; the mempool takes them from there.
_DEFAULTS = MempoolConfig()


@dataclass(frozen=True, slots=True)
class MempoolPolicy:
    """Per-sender budgets, the nonce-gap window and expiry: the [mempool] settings of the same
    names (node/config.py MempoolConfig, which documents them and holds their defaults)."""

    sender_txs_max: int = _DEFAULTS.sender_txs_max
    sender_bytes_max: int = _DEFAULTS.sender_bytes_max
    # A tx may be at most this many nonces past its sender's next nonce in the committed state
    # (0: only the next one), pending predecessors or not: with the app's window of 16 one
    # fresh key could park 15 unexecutable txs.
    nonce_gap_max: int = _DEFAULTS.nonce_gap_max
    ttl_ms: int = _DEFAULTS.ttl_ms
    ttl_heights: int = _DEFAULTS.ttl_heights
    gapped_ttl_ms: int = _DEFAULTS.gapped_ttl_ms
    recheck_interval_ms: int = _DEFAULTS.recheck_interval_ms

    @classmethod
    def from_config(cls, cfg: MempoolConfig) -> "MempoolPolicy":
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


class InvalidTxError(MempoolError):
    """check_tx found the tx invalid whatever the state (undecodable, bad signature).  Clients
    see the usual "check_tx" refusal; tx gossip penalizes a peer that sent one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "check_tx")


@dataclass(frozen=True, slots=True)
class MempoolEntry:
    tx: bytes
    hash: bytes
    sender: bytes
    nonce: int
    seq: int
    gap: int = 0  # nonces between the sender's next nonce and this one, at the last check
    added_s: float = 0.0
    added_height: int = 0


def tx_hash(tx: bytes) -> bytes:
    return tx_id(tx)


class Mempool:
    @classmethod
    def from_config(
        cls,
        check_tx: Callable[[bytes], CheckTxResult],
        cfg: MempoolConfig,
        clock: Callable[[], float] = time.monotonic,
        release: Callable[[bytes], None] | None = None,
    ) -> "Mempool":
        """A mempool with every [mempool] setting of `cfg`: how the node builds one."""
        return cls(
            check_tx,
            txs_max=cfg.txs_max,
            bytes_max=cfg.bytes_max,
            tx_bytes_max=cfg.tx_bytes_max,
            cache_hashes_max=cfg.cache_hashes_max,
            recheck=cfg.recheck,
            policy=MempoolPolicy.from_config(cfg),
            clock=clock,
            release=release,
        )

    def __init__(
        self,
        check_tx: Callable[[bytes], CheckTxResult],
        txs_max: int,
        bytes_max: int,
        tx_bytes_max: int,
        cache_hashes_max: int = _DEFAULTS.cache_hashes_max,
        recheck: bool = _DEFAULTS.recheck,
        policy: MempoolPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        release: Callable[[bytes], None] | None = None,
    ) -> None:
        self._check_tx = check_tx
        self._release = release or (lambda _tx: None)
        self._txs_max = txs_max
        self._bytes_max = bytes_max
        self._tx_bytes_max = tx_bytes_max
        self._cache_max = cache_hashes_max
        self._recheck = recheck
        self._policy = policy or MempoolPolicy()
        self._clock = clock
        self._entries: dict[bytes, MempoolEntry] = {}  # in arrival order
        self._bytes = 0
        self._seq = 0
        self._height = 0  # blocks seen by `update`
        self._committed: OrderedDict[bytes, None] = OrderedDict()
        # sender -> nonce -> hash of its pending tx with that nonce
        self._by_sender: dict[bytes, dict[int, bytes]] = {}
        self._sender_bytes: dict[bytes, int] = {}
        # Gapped txs by hash -> when they became gapped, in that order (oldest first).
        self._gapped: dict[bytes, float] = {}
        self._gapped_bytes = 0
        self._last_recheck_s = clock()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, h: object) -> bool:
        return h in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def gapped(self) -> int:
        """How many pending txs cannot run in the next block (missing nonces before them)."""
        return len(self._gapped)

    def get(self, h: bytes) -> bytes | None:
        entry = self._entries.get(h)
        return None if entry is None else entry.tx

    def seen(self, h: bytes) -> bool:
        """True if `h` is pending or was committed recently (no need to fetch or relay it)."""
        return h in self._entries or h in self._committed

    def ready(self, h: bytes) -> bool:
        return h in self._entries and h not in self._gapped

    # -- admission -------------------------------------------------------------------------------
    def add(self, tx: bytes, known_hash: bytes | None = None) -> MempoolEntry:
        """Admit `tx` or raise MempoolError.  `known_hash` saves hashing it again when the
        caller just computed tx_hash(tx) itself (never a hash that came from a peer)."""
        if not tx:
            raise MempoolError("empty transaction", "malformed")
        if len(tx) > self._tx_bytes_max:
            raise MempoolError(
                f"transaction of {len(tx)} bytes exceeds the limit of {self._tx_bytes_max}",
                "too_large",
            )
        h = tx_hash(tx) if known_hash is None else known_hash
        if h in self._entries:
            raise MempoolError("transaction already in the mempool", "duplicate")
        if h in self._committed:
            raise MempoolError("transaction already committed", "duplicate")
        # Refuse before check_tx (the expensive part) when even evicting every gapped tx
        # would not make room.
        self._check_room(len(tx), evictable=True)
        result = self._check_tx(tx)
        try:
            return self._admit(tx, h, result)
        except MempoolError:
            self._release(tx)
            raise

    def _admit(self, tx: bytes, h: bytes, result: CheckTxResult) -> MempoolEntry:
        """The policy part of `add`, after check_tx answered `result`."""
        if not result.ok:
            reason = result.reason or f"check_tx code {result.code}"
            if result.malformed:
                raise InvalidTxError(reason)
            raise MempoolError(reason, "check_tx")
        sender, nonce, gap = result.sender, result.nonce, max(0, result.nonce_gap)
        policy = self._policy
        if sender:
            if gap > policy.nonce_gap_max:
                raise MempoolError(
                    f"nonce {nonce} is {gap} past the sender's next nonce {nonce - gap}; "
                    f"at most {policy.nonce_gap_max} ahead are held",
                    "nonce_gap",
                )
            nonces = self._by_sender.get(sender, {})
            if nonce in nonces:
                raise MempoolError(
                    f"the sender already has a pending transaction with nonce {nonce}",
                    "duplicate",
                )
            if len(nonces) >= policy.sender_txs_max:
                raise MempoolError(
                    f"the sender already has {len(nonces)} pending transactions "
                    f"(limit {policy.sender_txs_max})",
                    "sender_limit",
                )
            held = self._sender_bytes.get(sender, 0)
            if held + len(tx) > policy.sender_bytes_max:
                raise MempoolError(
                    f"the sender's pending transactions would exceed "
                    f"{policy.sender_bytes_max} bytes",
                    "sender_limit",
                )
        pending = self._by_sender.get(sender, {})
        will_be_ready = not sender or all(n in pending for n in range(nonce - gap, nonce))
        self._check_room(len(tx), evictable=will_be_ready)
        self._evict_for(len(tx))
        self._seq += 1
        entry = MempoolEntry(
            tx=tx,
            hash=h,
            sender=sender,
            nonce=nonce,
            seq=self._seq,
            gap=gap,
            added_s=self._clock(),
            added_height=self._height,
        )
        self._entries[h] = entry
        self._bytes += len(tx)
        if sender:
            self._by_sender.setdefault(sender, {})[nonce] = h
            self._sender_bytes[sender] = self._sender_bytes.get(sender, 0) + len(tx)
            self._classify(sender)
        txid.remember(tx, h)  # this object will be proposed, checked and indexed: hash it once
        return entry

    def _check_room(self, size: int, evictable: bool) -> None:
        """Raise 'full' unless `size` more bytes and one more tx fit, counting the gapped txs
        as free space when the newcomer may evict them."""
        free_txs = self._txs_max - len(self._entries)
        free_bytes = self._bytes_max - self._bytes
        if evictable:
            free_txs += len(self._gapped)
            free_bytes += self._gapped_bytes
        if free_txs < 1:
            raise MempoolError(f"mempool full ({self._txs_max} transactions)", "full")
        if free_bytes < size:
            raise MempoolError(f"mempool full ({self._bytes_max} bytes)", "full")

    def _evict_for(self, size: int) -> None:
        """Drop the oldest gapped txs until one more tx of `size` bytes fits (the caller made
        sure that evicting every gapped tx is enough)."""
        while self._gapped and (
            len(self._entries) >= self._txs_max or self._bytes + size > self._bytes_max
        ):
            self._remove(next(iter(self._gapped)))
            self.evicted += 1

    # -- priority bookkeeping --------------------------------------------------------------------
    def _classify(self, sender: bytes) -> None:
        """Recompute which of `sender`'s txs are ready: a chain of consecutive nonces starting
        at the sender's next nonce (at most sender_txs_max entries: cheap)."""
        nonces = self._by_sender.get(sender)
        if not nonces:
            return
        now = self._clock()
        for nonce, h in nonces.items():
            entry = self._entries[h]
            ready = all(n in nonces for n in range(nonce - entry.gap, nonce))
            if ready and h in self._gapped:
                del self._gapped[h]
                self._gapped_bytes -= len(entry.tx)
            elif not ready and h not in self._gapped:
                self._gapped[h] = now
                self._gapped_bytes += len(entry.tx)

    def _remove(self, h: bytes) -> MempoolEntry | None:
        entry = self._entries.pop(h, None)
        if entry is None:
            return None
        self._bytes -= len(entry.tx)
        if h in self._gapped:
            del self._gapped[h]
            self._gapped_bytes -= len(entry.tx)
        if entry.sender:
            nonces = self._by_sender.get(entry.sender, {})
            if nonces.get(entry.nonce) == h:
                del nonces[entry.nonce]
            held = self._sender_bytes.get(entry.sender, 0) - len(entry.tx)
            if nonces:
                self._sender_bytes[entry.sender] = held
            else:
                self._by_sender.pop(entry.sender, None)
                self._sender_bytes.pop(entry.sender, None)
        txid.forget((entry.tx,))
        self._release(entry.tx)
        return entry

    # -- proposals -------------------------------------------------------------------------------
    def reap(self, txs_max: int, bytes_max: int) -> list[bytes]:
        out: list[bytes] = []
        total = 0
        for entry in self._ordered():
            if len(out) >= txs_max:
                break
            if total + len(entry.tx) > bytes_max:
                continue
            out.append(entry.tx)
            total += len(entry.tx)
        return out

    def _ordered(self) -> list[MempoolEntry]:
        by_sender: dict[bytes, list[MempoolEntry]] = {}
        anonymous: list[tuple[int, bytes, int, MempoolEntry]] = []
        for entry in self._entries.values():
            if entry.hash in self._gapped:
                continue
            if entry.sender:
                by_sender.setdefault(entry.sender, []).append(entry)
            else:
                anonymous.append((entry.seq, b"", 0, entry))
        keyed = anonymous
        for sender in sorted(by_sender):
            key = 0
            for entry in sorted(by_sender[sender], key=lambda e: (e.nonce, e.seq)):
                key = max(key, entry.seq)
                keyed.append((key, sender, entry.nonce, entry))
        keyed.sort(key=lambda k: (k[0], k[1], k[2]))
        return [k[3] for k in keyed]

    # -- after a block ---------------------------------------------------------------------------
    def update(self, committed: Sequence[bytes]) -> list[bytes]:
        """Drop committed txs, remember them, expire and recheck the rest; return the hashes
        dropped by expiry and recheck."""
        self._height += 1
        touched: set[bytes] = set()
        for h in committed:
            entry = self._remove(h)
            if entry is not None and entry.sender:
                touched.add(entry.sender)
            self._committed[h] = None
            self._committed.move_to_end(h)
        while len(self._committed) > self._cache_max:
            self._committed.popitem(last=False)
        now = self._clock()
        dropped = self._expire(now)
        due = (now - self._last_recheck_s) * 1000 >= self._policy.recheck_interval_ms
        if self._recheck and (committed or due):
            dropped += self._recheck_all(now)
        else:
            for sender in sorted(touched):
                self._classify(sender)
        return dropped

    def _expire(self, now: float) -> list[bytes]:
        policy = self._policy
        dropped: list[bytes] = []
        # Arrival order is admission-time and height order: the expired ones lead.
        for h, entry in self._entries.items():  # removed below, after both scans
            too_old = (now - entry.added_s) * 1000 >= policy.ttl_ms
            if not too_old and self._height - entry.added_height < policy.ttl_heights:
                break
            dropped.append(h)
        for h, since in self._gapped.items():
            if (now - since) * 1000 < policy.gapped_ttl_ms:
                break
            dropped.append(h)
        dropped = list(dict.fromkeys(dropped))  # a tx both old and gapped is listed once
        senders: set[bytes] = set()
        for h in dropped:
            gone = self._remove(h)
            if gone is not None and gone.sender:
                senders.add(gone.sender)
        for sender in sorted(senders):
            self._classify(sender)
        self.expired += len(dropped)
        return dropped

    def _recheck_all(self, now: float) -> list[bytes]:
        self._last_recheck_s = now
        dropped: list[bytes] = []
        senders: set[bytes] = set()
        for h, entry in list(self._entries.items()):
            result = self._check_tx(entry.tx)
            if not result.ok or max(0, result.nonce_gap) > self._policy.nonce_gap_max:
                self._remove(h)
                dropped.append(h)
                if entry.sender:
                    senders.add(entry.sender)
            elif result.nonce_gap != entry.gap:
                self._entries[h] = dataclasses.replace(entry, gap=max(0, result.nonce_gap))
                senders.add(entry.sender)
        for sender in sorted(senders):
            self._classify(sender)
        return dropped
