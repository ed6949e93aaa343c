"""Connection admission and eviction: a pure policy object fed events, returning decisions.

Theory of operation.  Peers fall into three classes (`PeerClass`): validators (their peer ids
are given by the node), persistent peers (configured, redialled forever) and strangers.
Validators and persistent peers are *protected*: they have reserved slots (no stranger limit
counts them, so 300 strangers cannot keep a validator out), they are never evicted and their
addresses are never refused before the handshake.  Strangers share bounded slots.

An inbound connection passes two gates.  Before the handshake the peer is unknown, so only what
its address tells is checked: an address ban (not for addresses a protected peer uses),
`pending_inbound_per_ip_max` and `pending_inbound_max`.  When either is full, the oldest
pending handshake (of that address, or of all) older than `pending_evict_after_ms` makes room
(an honest handshake takes a few round trips; one stalled for seconds is the likely attacker),
else the newcomer is refused.  After the handshake the peer id is known: protected peers are
admitted at once; strangers are refused when banned (by id or by address), over
`inbound_per_ip_max` or `inbound_per_subnet_max`, and when the `inbound_peers_max` stranger
slots are full, admitted only if a stranger past its `eviction_grace_ms` can be evicted: first
one with a negative score or idle for `peer_idle_ms` (lowest score, then idle longest); failing
that the youngest of the most crowded subnet, unless the newcomer comes from that subnet itself
(the netgroup eviction of Bitcoin Core: an attacker's churn evicts the attacker's own
connections).  Outbound connections to strangers are bounded by `outbound_peers_max`; dials to
protected peers never are.

Bans cost more than a new key: banning a stranger also bans its address, for at least the
same time, doubling for each repeat offence of that address (capped at
`address_ban_max_ms`).  A peer-id ban is forgotten once it expires, an address ban
`address_ban_max_ms` later (it remembers repeat offences): each new ban first drops the stale
entries at the front of its table (kept in order of their last ban), so the tables hold what
recent attacks banned, not the last `ban_entries_max` identities ever seen (in the soak they
grew by ~175 identities per stranger attack for good).  When a table is full all the same, the
entry expiring soonest goes.  Time comes in as `now_ms` with every event.
"""

import enum
import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from node.p2p.config import HostConfig
from node.p2p.errors import InvariantError
from node.p2p.peer_id import PeerId

# Protected peers' addresses are remembered to exempt them from address bans before the
# handshake; bounded like everything else (a node has a few dozen protected peers).
RESERVED_IPS_MAX = 1024

K = TypeVar("K")


class PeerClass(enum.Enum):
    VALIDATOR = "validator"
    PERSISTENT = "persistent"
    STRANGER = "stranger"

    @property
    def protected(self) -> bool:
        return self is not PeerClass.STRANGER


@dataclass(frozen=True, slots=True)
class Admit:
    """Go ahead; first close the connections in `evict` (already forgotten by the policy)."""

    evict: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Refuse:
    """Close the connection; `reason` is the stable name of the limit that refused it."""

    reason: str


Decision = Admit | Refuse


@dataclass(slots=True)
class _Conn:
    conn_id: int
    inbound: bool
    ip: str
    subnet: str
    opened_ms: int
    last_active_ms: int
    peer: PeerId | None = None
    established: bool = False


@dataclass(slots=True)
class _Ban:
    until_ms: int
    offences: int = 1


def subnet_of(ip: str, v4_prefix_bits: int, v6_prefix_bits: int) -> str:
    """The subnet key of `ip`; a non-IP address (a test's fake, a DNS name) is its own subnet."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    bits = v4_prefix_bits if addr.version == 4 else v6_prefix_bits
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


class ConnPolicy:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self._conns: dict[int, _Conn] = {}
        self._validators: frozenset[PeerId] = frozenset()
        self._persistent: set[PeerId] = set()
        self._reserved_ips: dict[str, None] = {}
        self._scores: dict[PeerId, int] = {}
        self._peer_bans: dict[PeerId, _Ban] = {}
        self._addr_bans: dict[str, _Ban] = {}

    # -- classes ------------------------------------------------------------------------------
    def set_validators(self, peers: Iterable[PeerId]) -> None:
        self._validators = frozenset(peers)

    def add_persistent(self, peer: PeerId, ip: str | None = None) -> None:
        self._persistent.add(peer)
        if ip:
            self._reserve_ip(ip)

    def peer_class(self, peer: PeerId) -> PeerClass:
        if peer in self._validators:
            return PeerClass.VALIDATOR
        if peer in self._persistent:
            return PeerClass.PERSISTENT
        return PeerClass.STRANGER

    # -- inbound ------------------------------------------------------------------------------
    def inbound_opened(self, conn_id: int, ip: str, now_ms: int) -> Decision:
        """A TCP connection was accepted; the peer is not known yet."""
        self._check_new(conn_id)
        if ip not in self._reserved_ips and self._banned(self._addr_bans, ip, now_ms):
            return Refuse("address_banned")
        # The per-IP and per-subnet caps wait for the handshake although it costs CPU: a
        # validator may share its address with strangers (NAT) and must still get in.
        pending = [c for c in self._conns.values() if c.inbound and not c.established]
        same_ip = [c for c in pending if c.ip == ip]
        # Full (for this address, or in all): the oldest handshake stalled for
        # pending_evict_after_ms makes room, so stalled handshakes, even from a validator's own
        # address, hold a newcomer up for that long at most.  One out, one in: both limits hold.
        if len(same_ip) >= self.config.pending_inbound_per_ip_max:
            full, reason = same_ip, "pending_inbound_per_ip_max"
        elif len(pending) >= self.config.pending_inbound_max:
            full, reason = pending, "pending_inbound_max"
        else:
            full, reason = [], ""
        evict: tuple[int, ...] = ()
        if full:
            oldest = min(full, key=lambda c: (c.opened_ms, c.conn_id))
            if now_ms - oldest.opened_ms < self.config.pending_evict_after_ms:
                return Refuse(reason)
            del self._conns[oldest.conn_id]
            evict = (oldest.conn_id,)
        self._conns[conn_id] = self._new(conn_id, True, ip, now_ms)
        return Admit(evict)

    # -- outbound -----------------------------------------------------------------------------
    def outbound_started(self, conn_id: int, peer: PeerId | None, now_ms: int) -> Decision:
        """We are about to dial `peer` (None: an address without /p2p/, a stranger)."""
        self._check_new(conn_id)
        if peer is not None and self._banned(self._peer_bans, peer, now_ms):
            return Refuse("peer_banned")
        if peer is None or not self.peer_class(peer).protected:
            strangers_out = sum(
                1 for c in self._conns.values() if not c.inbound and self._stranger(c)
            )
            if strangers_out >= self.config.outbound_peers_max:
                return Refuse("outbound_peers_max")
        conn = self._new(conn_id, False, "", now_ms)
        conn.peer = peer
        self._conns[conn_id] = conn
        return Admit()

    # -- both directions ----------------------------------------------------------------------
    def handshaken(self, conn_id: int, peer: PeerId, ip: str, now_ms: int) -> Decision:
        """The handshake authenticated `peer` on a connection from/to `ip`."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return Refuse("evicted_while_pending")
        decision = self._decide(conn, peer, ip, now_ms)
        if isinstance(decision, Refuse):
            del self._conns[conn_id]
            return decision
        for victim in decision.evict:
            self._forget(victim)
        conn.peer = peer
        conn.ip = ip
        conn.subnet = self._subnet(ip)
        conn.established = True
        conn.last_active_ms = now_ms
        if self.peer_class(peer).protected:
            self._reserve_ip(ip)
        return decision

    def _decide(self, conn: _Conn, peer: PeerId, ip: str, now_ms: int) -> Decision:
        if self._banned(self._peer_bans, peer, now_ms):
            return Refuse("peer_banned")
        if self.peer_class(peer).protected:
            return Admit()
        if self._banned(self._addr_bans, ip, now_ms):
            return Refuse("address_banned")
        if not conn.inbound:
            return Admit()  # the outbound slot was taken when the dial started
        subnet = self._subnet(ip)
        refusal = self._address_cap(ip, subnet)
        if refusal is not None:
            return refusal
        strangers = self._inbound_strangers()
        if len(strangers) < self.config.inbound_peers_max:
            return Admit()
        victim = self._victim(strangers, subnet, now_ms)
        if victim is None:
            return Refuse("inbound_peers_max")
        return Admit((victim.conn_id,))

    def _inbound_strangers(self) -> list[_Conn]:
        return [
            c for c in self._conns.values() if c.inbound and c.established and self._stranger(c)
        ]

    def _address_cap(self, ip: str, subnet: str) -> Refuse | None:
        strangers = self._inbound_strangers()
        if sum(1 for c in strangers if c.ip == ip) >= self.config.inbound_per_ip_max:
            return Refuse("inbound_per_ip_max")
        if sum(1 for c in strangers if c.subnet == subnet) >= self.config.inbound_per_subnet_max:
            return Refuse("inbound_per_subnet_max")
        return None

    def _victim(self, strangers: list[_Conn], subnet: str, now_ms: int) -> _Conn | None:
        grace_ms, idle_ms = self.config.eviction_grace_ms, self.config.peer_idle_ms
        candidates = [c for c in strangers if now_ms - c.opened_ms >= grace_ms]
        bad = [c for c in candidates if self._score(c) < 0 or now_ms - c.last_active_ms >= idle_ms]
        if bad:
            return min(bad, key=lambda c: (self._score(c), c.last_active_ms, c.conn_id))
        crowd = Counter(c.subnet for c in strangers)
        crowded, count = max(crowd.items(), key=lambda item: (item[1], item[0]))
        if crowded == subnet or count < 2:
            return None
        in_crowd = [c for c in candidates if c.subnet == crowded]
        if not in_crowd:
            return None
        return min(in_crowd, key=lambda c: (self._score(c), -c.opened_ms, c.conn_id))

    def closed(self, conn_id: int) -> None:
        """The connection is gone (any reason); unknown ids (already forgotten) are fine."""
        self._forget(conn_id)

    def activity(self, conn_id: int, now_ms: int) -> None:
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.last_active_ms = max(conn.last_active_ms, now_ms)

    def penalize(self, peer: PeerId, points: int) -> None:
        """Lower a connected peer's score; a stranger below zero is the first to be evicted."""
        if any(c.peer == peer for c in self._conns.values()):
            self._scores[peer] = self._scores.get(peer, 0) - points

    def score(self, peer: PeerId) -> int:
        return self._scores.get(peer, 0)

    # -- bans ---------------------------------------------------------------------------------
    def ban(self, peer: PeerId, ip: str | None, duration_ms: int, now_ms: int) -> int:
        """Ban `peer` for `duration_ms`; a stranger's address too, for longer on each repeat
        offence.  Returns how long the address is banned (0: not banned)."""
        if duration_ms <= 0:
            raise InvariantError(f"ban duration must be positive, got {duration_ms}")
        self._put_ban(self._peer_bans, peer, _Ban(now_ms + duration_ms), now_ms, 0)
        if not ip or self.peer_class(peer).protected:
            return 0
        previous = self._addr_bans.get(ip)
        offences = 1
        if previous is not None and now_ms < previous.until_ms + self.config.address_ban_max_ms:
            offences = previous.offences + 1
        address_ms = min(duration_ms << min(offences - 1, 32), self.config.address_ban_max_ms)
        address_ms = max(address_ms, duration_ms)
        memory_ms = self.config.address_ban_max_ms
        self._put_ban(self._addr_bans, ip, _Ban(now_ms + address_ms, offences), now_ms, memory_ms)
        return address_ms

    def is_banned(self, peer: PeerId, now_ms: int) -> bool:
        return self._banned(self._peer_bans, peer, now_ms)

    def is_address_banned(self, ip: str, now_ms: int) -> bool:
        return self._banned(self._addr_bans, ip, now_ms)

    def ban_entries(self) -> tuple[int, int]:
        """How many peer-id and address entries the ban tables hold (expired ones included
        until a later ban drops them)."""
        return len(self._peer_bans), len(self._addr_bans)

    # -- queries ------------------------------------------------------------------------------
    def pending_inbound(self) -> int:
        return sum(1 for c in self._conns.values() if c.inbound and not c.established)

    def inbound_strangers(self) -> int:
        return len(self._inbound_strangers())

    # -- helpers ------------------------------------------------------------------------------
    def _check_new(self, conn_id: int) -> None:
        if conn_id in self._conns:
            raise InvariantError(f"connection id {conn_id} reused")

    def _new(self, conn_id: int, inbound: bool, ip: str, now_ms: int) -> _Conn:
        return _Conn(conn_id, inbound, ip, self._subnet(ip), now_ms, now_ms)

    def _subnet(self, ip: str) -> str:
        return subnet_of(
            ip, self.config.subnet_ipv4_prefix_bits, self.config.subnet_ipv6_prefix_bits
        )

    def _stranger(self, conn: _Conn) -> bool:
        return conn.peer is None or not self.peer_class(conn.peer).protected

    def _score(self, conn: _Conn) -> int:
        return 0 if conn.peer is None else self._scores.get(conn.peer, 0)

    def _forget(self, conn_id: int) -> None:
        conn = self._conns.pop(conn_id, None)
        if conn is None or conn.peer is None:
            return
        if not any(c.peer == conn.peer for c in self._conns.values()):
            self._scores.pop(conn.peer, None)

    def _reserve_ip(self, ip: str) -> None:
        self._reserved_ips.pop(ip, None)
        self._reserved_ips[ip] = None
        while len(self._reserved_ips) > RESERVED_IPS_MAX:
            del self._reserved_ips[next(iter(self._reserved_ips))]

    @staticmethod
    def _banned(table: dict[K, _Ban], key: K, now_ms: int) -> bool:
        ban = table.get(key)
        return ban is not None and now_ms < ban.until_ms

    def _put_ban(
        self, table: dict[K, _Ban], key: K, ban: _Ban, now_ms: int, memory_ms: int
    ) -> None:
        """Ban `key`; an entry is stale `memory_ms` after its ban ends."""
        previous = table.pop(key, None)  # re-inserted at the end: the table stays in ban order
        if previous is not None and previous.until_ms > ban.until_ms:
            ban.until_ms = previous.until_ms
        while table:
            oldest = next(iter(table))
            if table[oldest].until_ms + memory_ms > now_ms:
                break
            del table[oldest]
        table[key] = ban
        if len(table) <= self.config.ban_entries_max:
            return
        for stale in [k for k, b in table.items() if b.until_ms + memory_ms <= now_ms]:
            del table[stale]
        while len(table) > self.config.ban_entries_max:
            soonest = min(table, key=lambda k: table[k].until_ms)
            del table[soonest]
