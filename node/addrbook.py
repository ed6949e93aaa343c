"""The address book: peers this node has heard of, how to dial them, and how that went.

Bounded (`entries_max`) and persisted in HOME/data/addrbook.json, written atomically (a temp
file, fsync, rename), so a restarted node dials the peers it knew instead of only its seeds.
A damaged file is set aside, never fatal: the book is a cache, the seeds rebuild it.

Which address may be told to whom (`shareable`): an address is only meaningful inside its
scope, so a loopback address is given only to a peer that reached us over loopback, a private
one (RFC 1918, ULA, link-local, CGNAT) only to peers on loopback or a private network, a
public one to anyone.  `strict` (p2p.addr_book_strict) keeps and shares public addresses only,
as on the open internet; a loopback testnet needs it off.
"""

import contextlib
import ipaddress
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from node.logging import log_event
from node.p2p.errors import P2PError
from node.p2p.multiaddr import Multiaddr
from node.p2p.peer_id import PeerId

log = logging.getLogger(__name__)

ENTRIES_MAX = 1_000
# An address that failed this many dials in a row, and never worked, is forgotten.
FAILURES_MAX = 8
FILE_BYTES_MAX = 4 * 1024 * 1024
SCOPES = ("loopback", "private", "public")


def scope(host: str) -> str:
    """ "loopback", "private", "public", or "unspecified" (0.0.0.0, ::: never dialable)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "public"  # a DNS name: meant to be resolved by whoever dials it
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_private or ip.is_link_local or ip in ipaddress.ip_network("100.64.0.0/10"):
        return "private"
    return "public"


def shareable(addr_host: str, requester_host: str, strict: bool) -> bool:
    """May an address on `addr_host` be given to a peer that connects from `requester_host`?"""
    addr_scope = scope(addr_host)
    if addr_scope == "unspecified":
        return False
    if strict:
        return addr_scope == "public"
    requester_scope = scope(requester_host)
    if requester_scope == "unspecified":
        return False
    return SCOPES.index(addr_scope) >= SCOPES.index(requester_scope)


@dataclass(frozen=True, slots=True)
class Entry:
    peer: str  # base58 peer id
    addr: str  # multiaddr without /p2p
    last_ok_ms: int = 0  # when a connection to it last passed the chain handshake; 0: never
    failures: int = 0  # dials failed in a row

    def multiaddr(self) -> Multiaddr:
        return Multiaddr.parse(self.addr).with_peer(PeerId.from_base58(self.peer))


class AddrBook:
    def __init__(
        self, path: Path | None, entries_max: int = ENTRIES_MAX, strict: bool = False
    ) -> None:
        self._path = path
        self._entries_max = entries_max
        self.strict = strict
        self._entries: dict[str, Entry] = {}
        self.dirty = False

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, peer: PeerId) -> Entry | None:
        return self._entries.get(str(peer))

    def entries(self) -> list[Entry]:
        return sorted(self._entries.values(), key=lambda e: e.peer)

    # -- updates --------------------------------------------------------------------------------
    def add(self, peer: PeerId, addr: Multiaddr) -> bool:
        """Learn an address (from a seed or a peer's exchange); a known peer keeps the address
        it was last reached at.  False if refused (bad scope) or the book had no room."""
        try:
            host, _ = addr.host_port()
        except P2PError:
            return False
        kind = scope(host)
        if kind == "unspecified" or (self.strict and kind != "public"):
            return False
        key = str(peer)
        text = str(addr.without_peer())
        known = self._entries.get(key)
        if known is not None:
            if known.last_ok_ms or known.addr == text:
                return True
            self._entries[key] = replace(known, addr=text)
            self.dirty = True
            return True
        if len(self._entries) >= self._entries_max and not self._evict_one():
            return False
        self._entries[key] = Entry(key, text)
        self.dirty = True
        return True

    def mark_ok(self, peer: PeerId, addr: Multiaddr, now_ms: int) -> None:
        """`peer` passed the chain handshake on a connection we can dial at `addr`."""
        key = str(peer)
        if key not in self._entries and not self.add(peer, addr):
            return
        self._entries[key] = Entry(key, str(addr.without_peer()), now_ms, 0)
        self.dirty = True

    def mark_failed(self, peer: PeerId) -> None:
        key = str(peer)
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.last_ok_ms == 0 and entry.failures + 1 >= FAILURES_MAX:
            del self._entries[key]
        else:
            self._entries[key] = replace(entry, failures=entry.failures + 1)
        self.dirty = True

    def forget(self, peer: PeerId) -> None:
        if self._entries.pop(str(peer), None) is not None:
            self.dirty = True

    def _evict_one(self) -> bool:
        """Make room: the worst entry that never worked, else the one that worked longest ago."""
        if not self._entries:
            return False
        worst = max(
            self._entries.values(), key=lambda e: (e.last_ok_ms == 0, e.failures, -e.last_ok_ms)
        )
        del self._entries[worst.peer]
        return True

    # -- queries --------------------------------------------------------------------------------
    def good(self, requester_host: str, limit: int, exclude: set[str]) -> list[Entry]:
        """Peers that passed the handshake, most recent first, whose address `requester_host`
        can use."""
        out: list[Entry] = []
        for entry in sorted(self._entries.values(), key=lambda e: (-e.last_ok_ms, e.peer)):
            if len(out) >= limit or entry.last_ok_ms == 0:
                break
            if entry.peer in exclude:
                continue
            try:
                host, _ = Multiaddr.parse(entry.addr).host_port()
            except P2PError:
                continue
            if shareable(host, requester_host, self.strict):
                out.append(entry)
        return out

    def candidates(self, exclude: set[str], limit: int) -> list[Entry]:
        """What to dial next: fewest recent failures first, then the most recently good."""
        ranked = sorted(
            (e for e in self._entries.values() if e.peer not in exclude),
            key=lambda e: (e.failures, -e.last_ok_ms, e.peer),
        )
        return ranked[:limit]

    # -- persistence ----------------------------------------------------------------------------
    def load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            if self._path.stat().st_size > FILE_BYTES_MAX:
                raise ValueError(f"larger than {FILE_BYTES_MAX} bytes")
            doc = json.loads(self._path.read_text())
            rows = doc["peers"]
            if not isinstance(rows, list):
                raise ValueError("peers: expected a list")
            for row in rows[: self._entries_max]:
                entry = _entry_from_json(row)
                self._entries[entry.peer] = entry
        except (OSError, ValueError, KeyError, TypeError, P2PError) as exc:
            aside = self._path.with_suffix(".json.bad")
            with contextlib.suppress(OSError):
                os.replace(self._path, aside)
            log_event(
                log, "addrbook_unreadable", logging.WARNING, path=str(self._path), error=str(exc)
            )
            self._entries.clear()
        self.dirty = False

    def save(self) -> None:
        if self._path is None or not self.dirty:
            return
        doc = {
            "peers": [
                {"peer": e.peer, "addr": e.addr, "last_ok_ms": e.last_ok_ms, "failures": e.failures}
                for e in self.entries()
            ]
        }
        tmp = self._path.with_suffix(".json.tmp")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        self.dirty = False


def _entry_from_json(row: Any) -> Entry:
    if not isinstance(row, dict):
        raise ValueError("peer entry: expected an object")
    peer, addr = str(row["peer"]), str(row["addr"])
    PeerId.from_base58(peer)
    Multiaddr.parse(addr).host_port()
    last_ok_ms, failures = row.get("last_ok_ms", 0), row.get("failures", 0)
    if not isinstance(last_ok_ms, int) or not isinstance(failures, int):
        raise ValueError("peer entry: last_ok_ms and failures must be integers")
    return Entry(peer, addr, max(0, last_ok_ms), max(0, failures))
