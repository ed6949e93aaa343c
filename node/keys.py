"""Key files: the node's p2p identity and the validator's (or client's) signing key.

A key file is JSON `{"type": "ed25519", "public_key": hex, "seed": hex}` written with mode 0600
through a temporary file and an atomic rename, so a crash never leaves half a key behind.
"""

import json
import os
from pathlib import Path

from consensus.crypto import SEED_BYTES, PrivateKey
from node.errors import ConfigError


def generate_key() -> PrivateKey:
    return PrivateKey(os.urandom(SEED_BYTES))


def write_key(path: Path, key: PrivateKey) -> None:
    body = {"type": "ed25519", "public_key": key.public_key.hex(), "seed": key.seed.hex()}
    write_private_file(path, (json.dumps(body, indent=2) + "\n").encode())


def read_key(path: Path) -> PrivateKey:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        # A node's keys come from `init`; any other key (a client's, a governance signer's)
        # from `keys new`.
        hint = (
            "fedchain init --home DIR"
            if path.name in ("node_key.json", "validator_key.json")
            else f"fedchain keys new {path}"
        )
        raise ConfigError(f"{path}: key file not found (create it with `{hint}`)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable key file: {exc}") from None
    if not isinstance(body, dict) or body.get("type") != "ed25519":
        raise ConfigError(f'{path}: type: expected "ed25519"')
    try:
        seed = bytes.fromhex(str(body.get("seed", "")))
        key = PrivateKey(seed)
    except ValueError:
        raise ConfigError(f"{path}: seed: expected {SEED_BYTES} bytes of hex") from None
    if "public_key" in body and body["public_key"] != key.public_key.hex():
        raise ConfigError(f"{path}: public_key: does not match the seed")
    return key


def load_or_create_key(path: Path) -> PrivateKey:
    if path.exists():
        return read_key(path)
    key = generate_key()
    write_key(path, key)
    return key


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600, durably: temp file, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
