"""A validator's signed genesis entry ("gentx"): what one organisation hands the coordinator.

Each organisation creates its keys on its own host and signs, with its validator key, the entry
that will name it in the genesis: chain id, name, power, its p2p identity and address.  The
coordinator collects the files and can check every signature, so nobody can enrol a key they
do not hold or change another party's power or address on the way.  The private keys never
leave their hosts.

    {"chain_id": ..., "name": ..., "public_key": HEX, "power": N, "node_id": "12D3KooW...",
     "p2p_address": "/ip4/.../tcp/.../p2p/12D3KooW...", "signature": HEX}

The signature covers encode(["fedchain/gentx/v1", chain_id, name, public_key, power, node_id,
p2p_address]).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.codec import encode
from consensus.crypto import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, PrivateKey, verify
from node.errors import ConfigError
from node.p2p.errors import P2PError
from node.p2p.multiaddr import Multiaddr
from node.p2p.peer_id import PeerId

GENTX_DOMAIN = "fedchain/gentx/v1"
NAME_CHARS_MAX = 64


@dataclass(frozen=True, slots=True)
class GenTx:
    chain_id: str
    name: str
    public_key: bytes
    power: int
    node_id: str
    p2p_address: str
    signature: bytes = b""

    def sign_bytes(self) -> bytes:
        return encode(
            [
                GENTX_DOMAIN,
                self.chain_id,
                self.name,
                self.public_key,
                self.power,
                self.node_id,
                self.p2p_address,
            ]
        )

    def problem(self) -> str | None:
        """Why this entry cannot go into a genesis, or None (signature included)."""
        if not 0 < len(self.name) <= NAME_CHARS_MAX:
            return f"name: expected 1 to {NAME_CHARS_MAX} characters"
        if len(self.public_key) != PUBLIC_KEY_BYTES:
            return f"public_key: expected {PUBLIC_KEY_BYTES} bytes"
        if self.power < 1:
            return "power: expected an integer >= 1"
        try:
            addr = Multiaddr.parse(self.p2p_address)
            addr.host_port()
            peer = addr.peer_id
        except P2PError as exc:
            return f"p2p_address: {exc}"
        if peer is None or str(peer) != self.node_id:
            return "p2p_address: must end in /p2p/<node id>"
        if not verify(self.public_key, self.sign_bytes(), self.signature):
            return "signature: not made by this validator key for these fields"
        return None


def sign_gentx(
    validator_key: PrivateKey,
    node_key: PrivateKey,
    chain_id: str,
    name: str,
    power: int,
    p2p_hostport: str,
) -> GenTx:
    node_id = str(PeerId.from_public_key(node_key.public_key))
    host, _, port = p2p_hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--p2p-address {p2p_hostport!r}: expected HOST:PORT")
    proto = "ip4" if all(part.isdigit() for part in host.split(".")) else "dns4"
    unsigned = GenTx(
        chain_id,
        name,
        validator_key.public_key,
        power,
        node_id,
        f"/{proto}/{host}/tcp/{port}/p2p/{node_id}",
    )
    gentx = GenTx(**{**_fields(unsigned), "signature": validator_key.sign(unsigned.sign_bytes())})
    problem = gentx.problem()
    if problem is not None:
        raise ConfigError(problem)
    return gentx


def write_gentx(path: Path, gentx: GenTx) -> None:
    body = {**_fields(gentx), "public_key": gentx.public_key.hex()}
    body["signature"] = gentx.signature.hex()
    path.write_text(json.dumps(body, indent=2) + "\n")


def read_gentx(path: Path) -> GenTx:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: gentx file not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable gentx: {exc}") from None
    try:
        gentx = _from_dict(body)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    problem = gentx.problem()
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    return gentx


def _from_dict(body: Any) -> GenTx:
    if not isinstance(body, dict):
        raise ConfigError("expected a JSON object")
    expected = {"chain_id", "name", "public_key", "power", "node_id", "p2p_address", "signature"}
    if set(body) != expected:
        raise ConfigError(f"expected exactly the fields {', '.join(sorted(expected))}")
    power = body["power"]
    if isinstance(power, bool) or not isinstance(power, int):
        raise ConfigError("power: expected an integer")
    signature = bytes.fromhex(str(body["signature"]))
    if len(signature) != SIGNATURE_BYTES:
        raise ConfigError(f"signature: expected {SIGNATURE_BYTES} bytes")
    return GenTx(
        chain_id=str(body["chain_id"]),
        name=str(body["name"]),
        public_key=bytes.fromhex(str(body["public_key"])),
        power=power,
        node_id=str(body["node_id"]),
        p2p_address=str(body["p2p_address"]),
        signature=signature,
    )


def _fields(gentx: GenTx) -> dict[str, Any]:
    return {
        "chain_id": gentx.chain_id,
        "name": gentx.name,
        "public_key": gentx.public_key,
        "power": gentx.power,
        "node_id": gentx.node_id,
        "p2p_address": gentx.p2p_address,
        "signature": gentx.signature,
    }
