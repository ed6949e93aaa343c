"""Argument types shared by the subcommands."""

import argparse
from urllib.parse import urlsplit

RPC_DEFAULT = "http://127.0.0.1:26657"


def rpc_url(text: str) -> str:
    """A node RPC address: a full URL, or `host:port` (what operators type), as an http URL.

    Without a scheme aiohttp read "127.0.0.1:36001" as scheme "127.0.0.1" and failed with an
    unrelated TLS message; a bare host:port is plain HTTP on that port.
    """
    value = text.strip()
    if "://" not in value:
        value = f"http://{value}"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"{text!r}: the RPC URL must be http:// or https://")
    try:
        port = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the port is not a number 0-65535") from None
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r}: no host (expected host:port or a URL)")
    if port is None and "://" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: no port (expected host:port)")
    return value.rstrip("/")
