"""Drive tests/interop/libp2p_peer.py (py-libp2p, trio) as a child process from asyncio."""

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

PEER_SCRIPT = Path(__file__).with_name("libp2p_peer.py")


class LibP2PPeer:
    def __init__(self, proc: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.addr: str = ready["addr"]
        self.peer: str = ready["peer"]
        self.events: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, *args: str) -> "LibP2PPeer":
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PEER_SCRIPT),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=16 * 1024 * 1024,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        ready = json.loads(line)
        if ready.get("event") != "ready":
            raise RuntimeError(f"py-libp2p peer did not start: {line!r}")
        peer = cls(proc, ready)
        peer._reader = asyncio.create_task(peer._read())
        return peer

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))
            self._new.set()

    def send(self, op: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())

    async def expect(self, event: str, timeout_s: float = 30, **match: Any) -> dict[str, Any]:
        """The first not-yet-consumed event named `event` whose fields include `match`."""
        async with asyncio.timeout(timeout_s):
            while True:
                for i, e in enumerate(self.events):
                    if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                        del self.events[i]
                        return e
                    if e.get("event") == "error":
                        raise RuntimeError(f"py-libp2p peer error: {e}")
                self._new.clear()
                await self._new.wait()

    def take(self, event: str) -> list[dict[str, Any]]:
        taken = [e for e in self.events if e.get("event") == event]
        self.events = [e for e in self.events if e.get("event") != event]
        return taken

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                self.send("quit")
                await asyncio.wait_for(self.proc.wait(), 5)
            except (TimeoutError, ConnectionError, BrokenPipeError):
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
