"""Multiaddrs: the text form (/ip4/1.2.3.4/tcp/5/p2p/12D3...) and the binary form identify uses.

Only the protocols this stack dials or reports are understood (ip4, ip6, dns, dns4, dns6, tcp,
udp, p2p); an address with any other component is refused with a DecodeError, which callers
treat as "skip this address".
"""

import ipaddress
from dataclasses import dataclass

from node.p2p.errors import DecodeError
from node.p2p.peer_id import PeerId
from node.p2p.varint import decode_uvarint_complete, encode_uvarint

_CODES = {"ip4": 4, "tcp": 6, "udp": 273, "ip6": 41, "dns": 53, "dns4": 54, "dns6": 55, "p2p": 421}
_NAMES = {code: name for name, code in _CODES.items()}
ADDR_BYTES_MAX = 1024


@dataclass(frozen=True, slots=True)
class Multiaddr:
    parts: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> "Multiaddr":
        if len(text) > ADDR_BYTES_MAX or not text.startswith("/"):
            raise DecodeError("multiaddr must start with /")
        tokens = text.split("/")[1:]
        parts: list[tuple[str, str]] = []
        i = 0
        while i < len(tokens):
            name = tokens[i]
            if name not in _CODES or i + 1 >= len(tokens):
                raise DecodeError(f"unsupported multiaddr component {name[:32]!r}")
            value = tokens[i + 1]
            _check_value(name, value)
            parts.append((name, value))
            i += 2
        return cls(tuple(parts))

    @classmethod
    def tcp(cls, host: str, port: int, peer: PeerId | None = None) -> "Multiaddr":
        family = "ip6" if ":" in host else "ip4"
        parts = [(family, host), ("tcp", str(port))]
        if peer is not None:
            parts.append(("p2p", peer.to_base58()))
        return cls(tuple(parts))

    def __str__(self) -> str:
        return "".join(f"/{name}/{value}" for name, value in self.parts)

    def value(self, name: str) -> str | None:
        for part_name, part_value in self.parts:
            if part_name == name:
                return part_value
        return None

    @property
    def peer_id(self) -> PeerId | None:
        text = self.value("p2p")
        return None if text is None else PeerId.from_base58(text)

    def host_port(self) -> tuple[str, int]:
        host = self.value("ip4") or self.value("ip6") or self.value("dns4") or self.value("dns")
        port = self.value("tcp")
        if host is None or port is None:
            raise DecodeError(f"not a tcp address: {self}")
        return host, int(port)

    def without_peer(self) -> "Multiaddr":
        return Multiaddr(tuple(p for p in self.parts if p[0] != "p2p"))

    def with_peer(self, peer: PeerId) -> "Multiaddr":
        return Multiaddr((*self.without_peer().parts, ("p2p", peer.to_base58())))

    def to_bytes(self) -> bytes:
        out = bytearray()
        for name, value in self.parts:
            out += encode_uvarint(_CODES[name])
            match name:
                case "ip4" | "ip6":
                    out += ipaddress.ip_address(value).packed
                case "tcp" | "udp":
                    out += int(value).to_bytes(2, "big")
                case "p2p":
                    raw = PeerId.from_base58(value).raw
                    out += encode_uvarint(len(raw)) + raw
                case _:
                    raw = value.encode()
                    out += encode_uvarint(len(raw)) + raw
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Multiaddr":
        if len(data) > ADDR_BYTES_MAX:
            raise DecodeError("binary multiaddr too long")
        parts: list[tuple[str, str]] = []
        pos = 0
        while pos < len(data):
            code, pos = decode_uvarint_complete(data, pos)
            name = _NAMES.get(code)
            if name is None:
                raise DecodeError(f"unsupported multiaddr code {code}")
            match name:
                case "ip4" | "ip6":
                    size = 4 if name == "ip4" else 16
                    if len(data) - pos < size:
                        raise DecodeError("truncated ip address")
                    value = str(ipaddress.ip_address(bytes(data[pos : pos + size])))
                    pos += size
                case "tcp" | "udp":
                    if len(data) - pos < 2:
                        raise DecodeError("truncated port")
                    value = str(int.from_bytes(data[pos : pos + 2], "big"))
                    pos += 2
                case _:
                    length, pos = decode_uvarint_complete(data, pos)
                    if length > len(data) - pos:
                        raise DecodeError("multiaddr component overruns")
                    raw = bytes(data[pos : pos + length])
                    pos += length
                    if name == "p2p":
                        value = PeerId.from_bytes(raw).to_base58()
                    else:
                        try:
                            value = raw.decode()
                        except UnicodeDecodeError as exc:
                            raise DecodeError("dns name is not utf-8") from exc
            parts.append((name, value))
        return cls(tuple(parts))


def _check_value(name: str, value: str) -> None:
    try:
        match name:
            case "ip4":
                ipaddress.IPv4Address(value)
            case "ip6":
                ipaddress.IPv6Address(value)
            case "tcp" | "udp":
                if not value.isdigit() or not 0 <= int(value) <= 65535:
                    raise DecodeError(f"bad port {value[:16]!r}")
            case "p2p":
                PeerId.from_base58(value)
            case _:
                if not value:
                    raise DecodeError("empty dns name")
    except ValueError as exc:
        raise DecodeError(f"bad {name} value") from exc
