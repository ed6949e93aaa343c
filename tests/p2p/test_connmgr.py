"""The connection policy as a specification: events in, decisions out, no sockets, no clock."""

import itertools
from collections.abc import Iterator

import pytest

from node.p2p.config import HostConfig
from node.p2p.connmgr import Admit, ConnPolicy, PeerClass, Refuse, subnet_of
from node.p2p.errors import InvariantError
from node.p2p.peer_id import PeerId
from tests.p2p.conftest import identity

SMALL = HostConfig(
    inbound_peers_max=4,
    outbound_peers_max=2,
    pending_inbound_max=3,
    pending_inbound_per_ip_max=2,
    pending_evict_after_ms=1_000,
    inbound_per_ip_max=2,
    inbound_per_subnet_max=3,
    eviction_grace_ms=5_000,
    peer_idle_ms=10_000,
    address_ban_max_ms=60_000,
    ban_entries_max=8,
)


def peer(label: str) -> PeerId:
    return identity(label).peer_id


class Net:
    """A policy plus fresh connection ids, and shorthands for whole inbound connections."""

    def __init__(self, config: HostConfig = SMALL) -> None:
        self.policy = ConnPolicy(config)
        self._ids: Iterator[int] = itertools.count(1)

    def accept(self, ip: str, now_ms: int = 0) -> tuple[int, Admit | Refuse]:
        conn_id = next(self._ids)
        return conn_id, self.policy.inbound_opened(conn_id, ip, now_ms)

    def connect(self, who: PeerId, ip: str, now_ms: int = 0) -> tuple[int, Admit | Refuse]:
        """Accept and handshake; the pre-handshake decision must admit."""
        conn_id, decision = self.accept(ip, now_ms)
        assert isinstance(decision, Admit), decision
        return conn_id, self.policy.handshaken(conn_id, who, ip, now_ms)

    def dial(self, who: PeerId | None, now_ms: int = 0) -> tuple[int, Admit | Refuse]:
        conn_id = next(self._ids)
        return conn_id, self.policy.outbound_started(conn_id, who, now_ms)


def fill_strangers(net: Net, count: int, now_ms: int = 0) -> list[int]:
    """`count` strangers from distinct /24 subnets (no per-IP or per-subnet cap binds)."""
    ids = []
    for i in range(count):
        conn_id, decision = net.connect(peer(f"filler-{i}"), f"10.{i}.0.1", now_ms)
        assert decision == Admit(), decision
        ids.append(conn_id)
    return ids


def test_peer_class_validator_then_persistent_then_stranger() -> None:
    net = Net()
    v, p, s = peer("v"), peer("p"), peer("s")
    net.policy.set_validators([v, p])
    net.policy.add_persistent(p)
    assert net.policy.peer_class(v) is PeerClass.VALIDATOR
    assert net.policy.peer_class(p) is PeerClass.VALIDATOR  # validator wins
    net.policy.set_validators([v])  # the validator set changed
    assert net.policy.peer_class(p) is PeerClass.PERSISTENT
    assert net.policy.peer_class(s) is PeerClass.STRANGER
    assert PeerClass.VALIDATOR.protected
    assert PeerClass.PERSISTENT.protected
    assert not PeerClass.STRANGER.protected


def test_validators_and_persistent_peers_get_in_when_stranger_slots_are_full() -> None:
    net = Net()
    fill_strangers(net, 4)
    _, refused = net.connect(peer("late-stranger"), "10.99.0.1")
    assert refused == Refuse("inbound_peers_max")
    v, p = peer("validator"), peer("persistent")
    net.policy.set_validators([v])
    net.policy.add_persistent(p)
    assert net.connect(v, "10.200.0.1")[1] == Admit()
    assert net.connect(p, "10.200.0.2")[1] == Admit()
    # Reserved slots do not take stranger slots, and evicted no one.
    assert net.policy.inbound_strangers() == 4


def test_a_new_stranger_evicts_an_idle_one_past_its_grace_period() -> None:
    net = Net()
    ids = fill_strangers(net, 4, now_ms=0)
    # Within the grace period nobody can be evicted, however idle.
    assert net.connect(peer("early"), "10.50.0.1", 4_999)[1] == Refuse("inbound_peers_max")
    # Past grace but active recently: not idle, and no subnet is crowded -> refused.
    for conn_id in ids:
        net.policy.activity(conn_id, 9_000)
    assert net.connect(peer("mid"), "10.50.0.1", 12_000)[1] == Refuse("inbound_peers_max")
    # ids[2] stays quiet; the others keep talking.
    for conn_id in (ids[0], ids[1], ids[3]):
        net.policy.activity(conn_id, 18_000)
    _, decision = net.connect(peer("honest-newcomer"), "10.50.0.1", 19_000)
    assert decision == Admit((ids[2],))
    assert net.policy.inbound_strangers() == 4


def test_negative_score_goes_first_and_protected_peers_are_never_evicted() -> None:
    net = Net(HostConfig(inbound_peers_max=2, eviction_grace_ms=1, peer_idle_ms=1_000_000))
    v = peer("validator")
    net.policy.set_validators([v])
    v_conn, _ = net.connect(v, "10.0.0.9", 0)
    good, bad = fill_strangers(net, 2, 0)
    net.policy.penalize(v, 100)  # protected: a score does not make it evictable
    net.policy.penalize(peer("filler-1"), 3)
    assert net.policy.score(peer("filler-1")) == -3
    _, decision = net.connect(peer("newcomer"), "10.77.0.1", 10)
    assert decision == Admit((bad,))
    assert v_conn not in decision.evict
    assert good not in decision.evict


def test_when_every_stranger_is_active_only_the_most_crowded_subnet_yields() -> None:
    config = HostConfig(inbound_peers_max=4, eviction_grace_ms=1, inbound_per_subnet_max=8)
    net = Net(config)
    a1 = net.connect(peer("a1"), "10.1.1.1", 0)[0]
    a2 = net.connect(peer("a2"), "10.1.1.2", 5)[0]
    a3 = net.connect(peer("a3"), "10.1.1.3", 3)[0]
    b1 = net.connect(peer("b1"), "10.2.2.1", 0)[0]
    for conn_id in (a1, a2, a3, b1):
        net.policy.activity(conn_id, 100)
    # A newcomer from the crowded subnet itself gets nothing.
    assert net.connect(peer("a4"), "10.1.1.4", 100)[1] == Refuse("inbound_peers_max")
    # One from elsewhere evicts the youngest of the crowded subnet (a2 opened last).
    assert net.connect(peer("c1"), "10.3.3.1", 100)[1] == Admit((a2,))


def test_per_ip_and_per_subnet_caps_bind_strangers_only() -> None:
    net = Net()
    assert net.connect(peer("x1"), "10.0.0.1")[1] == Admit()
    assert net.connect(peer("x2"), "10.0.0.1")[1] == Admit()
    assert net.connect(peer("x3"), "10.0.0.1")[1] == Refuse("inbound_per_ip_max")
    assert net.connect(peer("y1"), "10.0.0.2")[1] == Admit()
    assert net.connect(peer("y2"), "10.0.0.3")[1] == Refuse("inbound_per_subnet_max")
    # A validator behind the same full address (a NAT), never seen before, still gets in.
    v = peer("validator-on-the-same-ip")
    net.policy.set_validators([v])
    assert net.connect(v, "10.0.0.1")[1] == Admit()
    # A closed connection frees its place under the cap.
    first = net.connect(peer("z1"), "10.9.0.1")[0]
    net.connect(peer("z2"), "10.9.0.1")
    net.policy.closed(first)
    net.policy.closed(first)  # idempotent
    assert net.connect(peer("z3"), "10.9.0.1")[1] == Admit()


def test_pending_handshakes_are_bounded_in_all_and_per_ip() -> None:
    net = Net()
    assert net.accept("10.0.0.1", 0)[1] == Admit()
    assert net.accept("10.0.0.1", 0)[1] == Admit()
    assert net.accept("10.0.0.1", 0)[1] == Refuse("pending_inbound_per_ip_max")
    net.accept("10.0.0.2", 100)
    assert net.policy.pending_inbound() == 3
    # Full: a newcomer is refused while every pending handshake is young ...
    assert net.accept("10.0.0.3", 900)[1] == Refuse("pending_inbound_max")
    # ... and replaces the oldest once that one has stalled past pending_evict_after_ms.
    new_id, decision = net.accept("10.0.0.3", 1_000)
    assert decision == Admit((1,))
    assert net.policy.pending_inbound() == 3
    # The evicted connection's late handshake is refused.
    assert net.policy.handshaken(1, peer("slow"), "10.0.0.1", 1_100) == Refuse(
        "evicted_while_pending"
    )
    assert net.policy.handshaken(new_id, peer("fast"), "10.0.0.3", 1_100) == Admit()
    assert net.policy.pending_inbound() == 2


def test_stalled_handshakes_from_one_address_hold_it_up_only_briefly() -> None:
    """Even a validator's own address (a NAT, a loopback testnet) cannot be blocked for long
    by handshakes that never finish."""
    net = Net()
    first, _ = net.accept("127.0.0.1", 0)
    net.accept("127.0.0.1", 10)
    assert net.accept("127.0.0.1", 999)[1] == Refuse("pending_inbound_per_ip_max")
    conn_id, decision = net.accept("127.0.0.1", 1_000)
    assert decision == Admit((first,))
    v = peer("validator")
    net.policy.set_validators([v])
    assert net.policy.handshaken(conn_id, v, "127.0.0.1", 1_050) == Admit()


def test_an_address_ban_outlasts_a_new_key_and_grows_on_repeat() -> None:
    net = Net()
    bad = peer("bad-1")
    net.connect(bad, "10.6.6.6", 0)
    assert net.policy.ban(bad, "10.6.6.6", 10_000, 0) == 10_000
    # A fresh key from the same address is refused before any handshake work.
    assert net.accept("10.6.6.6", 5_000)[1] == Refuse("address_banned")
    assert net.connect(peer("bad-2"), "10.6.6.7", 5_000)[1] == Admit()  # neighbours are fine
    # Peer-id bans apply in both directions.
    assert net.policy.is_banned(bad, 9_999)
    assert net.dial(bad, 9_999)[1] == Refuse("peer_banned")
    assert not net.policy.is_banned(bad, 10_000)
    # Expired: back in; the next offence costs twice as long, then four times, capped.
    assert net.connect(peer("bad-2b"), "10.6.6.6", 10_000)[1] == Admit()
    assert net.policy.ban(peer("bad-2b"), "10.6.6.6", 10_000, 10_000) == 20_000
    assert net.policy.is_address_banned("10.6.6.6", 29_999)
    assert not net.policy.is_address_banned("10.6.6.6", 30_000)
    assert net.policy.ban(peer("bad-3"), "10.6.6.6", 10_000, 30_000) == 40_000
    assert net.policy.ban(peer("bad-4"), "10.6.6.6", 10_000, 70_000) == 60_000  # the cap


def test_protected_peers_pass_an_address_ban_on_their_address() -> None:
    net = Net()
    v = peer("validator")
    net.policy.set_validators([v])
    assert net.connect(v, "127.0.0.1", 0)[1] == Admit()  # its address is now reserved
    stranger = peer("stranger")
    net.connect(stranger, "127.0.0.1", 0)
    net.policy.ban(stranger, "127.0.0.1", 10_000, 0)
    # The shared address is not refused before the handshake (it could be the validator) ...
    conn_id, decision = net.accept("127.0.0.1", 1_000)
    assert decision == Admit()
    # ... but after it, a stranger from there is, and the validator is not.
    assert net.policy.handshaken(conn_id, peer("another-stranger"), "127.0.0.1", 1_000) == (
        Refuse("address_banned")
    )
    assert net.connect(v, "127.0.0.1", 1_000)[1] == Admit()
    # Banning a protected peer bans its id only, never its address.
    assert net.policy.ban(v, "127.0.0.1", 1_000, 2_000) == 0


def test_persistent_peer_addresses_are_reserved_before_they_connect() -> None:
    net = Net()
    net.connect(peer("s"), "10.4.4.4", 0)
    net.policy.ban(peer("s"), "10.4.4.4", 10_000, 0)
    assert net.accept("10.4.4.4", 1)[1] == Refuse("address_banned")
    net.policy.add_persistent(peer("p"), "10.4.4.4")
    assert net.accept("10.4.4.4", 2)[1] == Admit()


def test_outbound_stranger_slots_are_bounded_but_dials_to_protected_peers_are_not() -> None:
    net = Net()
    p = peer("persistent")
    net.policy.add_persistent(p)
    assert net.dial(peer("s1"))[1] == Admit()
    assert net.dial(None)[1] == Admit()  # an address without a peer id counts as a stranger
    assert net.dial(peer("s3"))[1] == Refuse("outbound_peers_max")
    assert net.dial(p)[1] == Admit()
    conn_id, _ = net.dial(p)
    assert net.policy.handshaken(conn_id, p, "10.0.0.1", 0) == Admit()


def test_ban_tables_are_bounded() -> None:
    net = Net()
    for i in range(20):
        net.policy.ban(peer(f"b{i}"), f"10.0.{i}.1", 1_000 + i, 0)
    assert sum(net.policy.is_banned(peer(f"b{i}"), 0) for i in range(20)) == 8
    # The entries that expire last are the ones kept.
    assert net.policy.is_banned(peer("b19"), 0)
    assert not net.policy.is_banned(peer("b0"), 0)


def test_expired_bans_leave_the_tables() -> None:
    """A peer-id ban is dropped once it has expired; an address ban address_ban_max_ms later
    (it remembers repeat offences).  Before, every identity an attacker ever used stayed until
    the table was full (4,096 by default): the soak's validator grew with each attack."""
    net = Net()
    for i in range(5):
        net.policy.ban(peer(f"old{i}"), f"10.1.{i}.1", 1_000, 0)
    assert net.policy.ban_entries() == (5, 5)
    net.policy.ban(peer("new"), "10.2.0.1", 1_000, 2_000)
    assert net.policy.ban_entries() == (1, 6)  # the addresses still remember their offences
    assert net.policy.ban(peer("again"), "10.1.0.1", 1_000, 3_000) == 2_000  # a repeat: doubled
    net.policy.ban(peer("later"), "10.3.0.1", 1_000, 1_000 + SMALL.address_ban_max_ms)
    assert net.policy.ban_entries() == (1, 3)  # the old, unrepeated addresses are forgotten


def test_conn_ids_are_never_reused_and_bans_must_last() -> None:
    net = Net()
    net.accept("10.0.0.1")
    with pytest.raises(InvariantError):
        net.policy.inbound_opened(1, "10.0.0.1", 0)
    with pytest.raises(InvariantError):
        net.policy.ban(peer("x"), None, 0, 0)


def test_subnets() -> None:
    assert subnet_of("127.0.0.2", 24, 48) == "127.0.0.0/24"
    assert subnet_of("10.1.2.3", 32, 48) == "10.1.2.3/32"
    assert subnet_of("2001:db8:1:2::1", 24, 48) == "2001:db8:1::/48"
    assert subnet_of("validator0", 24, 48) == "validator0"


def test_config_is_validated() -> None:
    with pytest.raises(InvariantError, match="subnet_ipv4_prefix_bits"):
        HostConfig(subnet_ipv4_prefix_bits=33)
    with pytest.raises(InvariantError, match="inbound_per_ip_max"):
        HostConfig(inbound_per_ip_max=20, inbound_per_subnet_max=10)
    with pytest.raises(InvariantError, match="pending_inbound_max"):
        HostConfig(pending_inbound_max=0)
