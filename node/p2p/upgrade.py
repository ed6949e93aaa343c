"""Turning a raw TCP connection into an authenticated, multiplexed one.

Both directions: multistream-select `/noise`, the three XX messages (2-byte length frames),
then multistream-select `/yamux/1.0.0` inside the encrypted channel.  The dialer checks that
the authenticated peer id is the one it dialled.  Everything runs under the handshake timeout
of the caller; any RemoteError aborts the connection.
"""

import os
from collections.abc import Callable

from node.p2p.buffer import ReadBuffer
from node.p2p.config import HostConfig
from node.p2p.errors import HandshakeError
from node.p2p.negotiate import select_inbound, select_outbound
from node.p2p.noise import PROTOCOL_ID as NOISE_ID
from node.p2p.noise import Handshake, make_payload, verify_payload
from node.p2p.peer_id import Identity, PeerId
from node.p2p.secure import SecureChannel
from node.p2p.tcp import TcpConnection
from node.p2p.yamux import PROTOCOL_ID as YAMUX_ID


def _noise_frame(ciphertext: bytes) -> bytes:
    return len(ciphertext).to_bytes(2, "big") + ciphertext


def _parse_noise_frame(buf: bytes) -> tuple[bytes, int] | None:
    if len(buf) < 2:
        return None
    length = (buf[0] << 8) | buf[1]
    if len(buf) < 2 + length:
        return None
    return bytes(buf[2 : 2 + length]), 2 + length


async def _read_noise_frame(inbox: ReadBuffer) -> bytes:
    return await inbox.read_parsed(_parse_noise_frame, 2 + 65535)


async def secure_outbound(
    tcp: TcpConnection,
    identity: Identity,
    static_private: bytes,
    expected: PeerId | None,
    config: HostConfig,
) -> SecureChannel:
    await select_outbound(tcp.inbox, tcp.write_async, [NOISE_ID])
    hs = Handshake(True, static_private, os.urandom(32))
    tcp.write(_noise_frame(hs.write_message_1()))
    payload = hs.read_message_2(await _read_noise_frame(tcp.inbox))
    remote = verify_payload(payload, hs.remote_static)
    if expected is not None and remote != expected:
        raise HandshakeError(f"dialled {expected.short()} but reached {remote.short()}")
    tcp.write(_noise_frame(hs.write_message_3(make_payload(identity, hs.s_public))))
    send, recv = hs.split()
    channel = SecureChannel(
        tcp, send, recv, remote, config.bulk_queue_bytes_max, config.high_queue_bytes_max
    )
    await select_outbound(channel.inbox, channel.send_async, [YAMUX_ID])
    return channel


async def secure_inbound(
    tcp: TcpConnection,
    identity: Identity,
    static_private: bytes,
    config: HostConfig,
    admit: Callable[[PeerId], bool],
) -> SecureChannel:
    """Accept a connection; `admit` may refuse the authenticated peer (e.g. banned) before
    the muxer is negotiated, so the dialler's upgrade fails."""
    await select_inbound(tcp.inbox, tcp.write_async, {NOISE_ID}, config.negotiation_attempts_max)
    hs = Handshake(False, static_private, os.urandom(32))
    hs.read_message_1(await _read_noise_frame(tcp.inbox))
    tcp.write(_noise_frame(hs.write_message_2(make_payload(identity, hs.s_public))))
    payload = hs.read_message_3(await _read_noise_frame(tcp.inbox))
    remote = verify_payload(payload, hs.remote_static)
    if not admit(remote):
        raise HandshakeError(f"peer {remote.short()} refused")
    send, recv = hs.split()
    channel = SecureChannel(
        tcp, send, recv, remote, config.bulk_queue_bytes_max, config.high_queue_bytes_max
    )
    await select_inbound(
        channel.inbox, channel.send_async, {YAMUX_ID}, config.negotiation_attempts_max
    )
    return channel
