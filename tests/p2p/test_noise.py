"""The Noise XX state machine, two instances through an in-memory link (no sockets)."""

import pytest

from node.p2p.errors import HandshakeError, InvariantError
from node.p2p.noise import Handshake, make_payload, verify_payload
from node.p2p.peer_id import PeerId
from tests.p2p.conftest import identity


def handshake_pair() -> tuple[Handshake, Handshake, PeerId, PeerId]:
    alice, bob = identity("alice"), identity("bob")
    initiator = Handshake(True, b"\x11" * 32, b"\x12" * 32)
    responder = Handshake(False, b"\x21" * 32, b"\x22" * 32)
    assert responder.read_message_1(initiator.write_message_1()) == b""
    m2 = responder.write_message_2(make_payload(bob, responder.s_public))
    seen_by_alice = verify_payload(initiator.read_message_2(m2), initiator.remote_static)
    m3 = initiator.write_message_3(make_payload(alice, initiator.s_public))
    seen_by_bob = verify_payload(responder.read_message_3(m3), responder.remote_static)
    return initiator, responder, seen_by_alice, seen_by_bob


def test_xx_handshake_authenticates_both_peer_ids_and_agrees_on_keys() -> None:
    initiator, responder, seen_by_alice, seen_by_bob = handshake_pair()
    assert seen_by_alice == identity("bob").peer_id
    assert seen_by_bob == identity("alice").peer_id
    i_send, i_recv = initiator.split()
    r_send, r_recv = responder.split()
    for n in range(3):
        message = b"frame %d" % n
        assert r_recv.decrypt(i_send.encrypt(message)) == message
        assert i_recv.decrypt(r_send.encrypt(message)) == message


def test_same_keys_same_transcript() -> None:
    a = Handshake(True, b"\x11" * 32, b"\x12" * 32).write_message_1()
    b = Handshake(True, b"\x11" * 32, b"\x12" * 32).write_message_1()
    assert a == b


def test_tampered_message_2_fails_authentication() -> None:
    initiator = Handshake(True, b"\x11" * 32, b"\x12" * 32)
    responder = Handshake(False, b"\x21" * 32, b"\x22" * 32)
    responder.read_message_1(initiator.write_message_1())
    m2 = bytearray(responder.write_message_2(make_payload(identity("bob"), responder.s_public)))
    m2[-1] ^= 1
    with pytest.raises(HandshakeError):
        initiator.read_message_2(bytes(m2))


def test_payload_signed_for_another_static_key_is_refused() -> None:
    initiator = Handshake(True, b"\x11" * 32, b"\x12" * 32)
    responder = Handshake(False, b"\x21" * 32, b"\x22" * 32)
    responder.read_message_1(initiator.write_message_1())
    # Bob signs some other X25519 key: the binding between Noise key and peer id is broken.
    forged = make_payload(identity("bob"), b"\x99" * 32)
    payload = initiator.read_message_2(responder.write_message_2(forged))
    with pytest.raises(HandshakeError, match="signature"):
        verify_payload(payload, initiator.remote_static)


def test_replayed_transport_frame_is_refused() -> None:
    initiator, responder, _, _ = handshake_pair()
    i_send, _ = initiator.split()
    _, r_recv = responder.split()
    frame = i_send.encrypt(b"once")
    assert r_recv.decrypt(frame) == b"once"
    with pytest.raises(HandshakeError):
        r_recv.decrypt(frame)  # the nonce moved on


def test_steps_out_of_order_are_our_bug() -> None:
    initiator = Handshake(True, b"\x11" * 32, b"\x12" * 32)
    with pytest.raises(InvariantError):
        initiator.write_message_3(b"")
    with pytest.raises(InvariantError):
        initiator.split()
