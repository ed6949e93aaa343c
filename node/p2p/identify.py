"""identify `/ipfs/id/1.0.0`: the message codec.

Identify{publicKey=1, listenAddrs=2 (repeated, binary multiaddr), protocols=3 (repeated),
observedAddr=4, protocolVersion=5, agentVersion=6}, sent uvarint-length-prefixed by the
responder, who then closes the stream.  Addresses we cannot parse are skipped and counted.
"""

from dataclasses import dataclass

from node.p2p.errors import DecodeError, LimitError
from node.p2p.multiaddr import Multiaddr
from node.p2p.protobuf import as_bytes, as_str, field_bytes, field_str, iter_fields

PROTOCOL_ID = "/ipfs/id/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"
PROTOCOLS_MAX = 256
ADDRS_MAX = 64


@dataclass(frozen=True, slots=True)
class IdentifyMessage:
    public_key: bytes
    listen_addrs: tuple[Multiaddr, ...]
    protocols: tuple[str, ...]
    observed_addr: Multiaddr | None
    protocol_version: str
    agent_version: str
    addrs_skipped: int = 0

    def encode(self) -> bytes:
        out = bytearray()
        out += field_str(5, self.protocol_version)
        out += field_str(6, self.agent_version)
        out += field_bytes(1, self.public_key)
        for addr in self.listen_addrs:
            out += field_bytes(2, addr.to_bytes())
        if self.observed_addr is not None:
            out += field_bytes(4, self.observed_addr.to_bytes())
        for protocol in self.protocols:
            out += field_str(3, protocol)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> "IdentifyMessage":
        public_key = b""
        addrs: list[Multiaddr] = []
        protocols: list[str] = []
        observed: Multiaddr | None = None
        protocol_version = agent_version = ""
        skipped = 0
        for number, value in iter_fields(data, fields_max=1024):
            match number:
                case 1:
                    public_key = as_bytes(value, "publicKey")
                case 2:
                    if len(addrs) >= ADDRS_MAX:
                        raise LimitError("identify: too many listen addresses")
                    try:
                        addrs.append(Multiaddr.from_bytes(as_bytes(value, "listenAddrs")))
                    except DecodeError:
                        skipped += 1
                case 3:
                    if len(protocols) >= PROTOCOLS_MAX:
                        raise LimitError("identify: too many protocols")
                    protocols.append(as_str(value, "protocols", 256))
                case 4:
                    try:
                        observed = Multiaddr.from_bytes(as_bytes(value, "observedAddr"))
                    except DecodeError:
                        skipped += 1
                case 5:
                    protocol_version = as_str(value, "protocolVersion", 256)
                case 6:
                    agent_version = as_str(value, "agentVersion", 256)
                case _:
                    pass
        return cls(
            public_key,
            tuple(addrs),
            tuple(protocols),
            observed,
            protocol_version,
            agent_version,
            skipped,
        )
