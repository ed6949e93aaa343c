"""The root exception of node.p2p and its two families.

`RemoteError` subclasses describe what a peer sent us wrong: the shell logs it at debug, counts
it, penalizes or disconnects the peer, and carries on.  `P2PError` subclasses outside that
family are conditions the caller asked about (a closed stream, a timeout, an unknown protocol).
`InvariantError` is our own bug and is raised, never swallowed.
"""


class P2PError(Exception):
    """Root of every error raised by node.p2p."""


class RemoteError(P2PError):
    """A peer violated a protocol; never crash the node because of it."""


class DecodeError(RemoteError):
    """Bytes do not decode to a well-formed message."""


class LimitError(DecodeError):
    """A declared length or count is over its configured limit (checked before allocating)."""


class HandshakeError(RemoteError):
    """Noise handshake failed: bad MAC, bad signature, wrong peer id."""


class MuxerError(RemoteError):
    """The peer broke the yamux protocol (window overrun, unknown stream, bad version)."""


class ProtocolNotSupported(P2PError):
    """multistream-select: the peer answered `na` to every protocol we proposed."""


class StreamClosed(P2PError):
    """The stream or its connection is closed (or was reset) and cannot carry more data."""


class StreamReset(StreamClosed):
    """The peer reset the stream."""


class DialError(P2PError):
    """A dial failed (refused, unreachable, handshake failure, limit reached)."""


class PeerUnavailable(P2PError):
    """No connection to that peer."""


class RequestTimeout(P2PError):
    """A request/response round trip exceeded its deadline."""


class InvariantError(P2PError):
    """Our own invariant broke: a bug, never a peer's fault."""
