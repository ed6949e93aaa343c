"""A 4-validator fedchain testnet on loopback for the benchmarks, with a round watcher.

Wraps node.localnet.LocalNet (real `fedchain start` processes, real sockets, real SQLite):
generate the homes, replace the FL genesis with the benchmark's model and parameters, start
the validators, wait until every one of them answers and has committed a block.

`RoundWatcher` learns when each FL round opens on each validator.  By default it subscribes to
each validator's WebSocket event stream (`/ws?events=fl_round_closed`): a node publishes the
event after `app.commit()`, when `/query/model` already serves the new model, so the arrival
instant is when that validator makes the model available (plus a loopback hop), and an idle
subscription costs the node nothing.  With `poll_interval_s > 0` it polls `/query/round`
instead (a cross-check; 4 requests per interval in total).  The instant a round is "available
on every validator" is the latest of the four first-seen instants.
"""

import asyncio
import dataclasses
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from consensus.codec import decode, expect_int, expect_seq
from node.genesis import read_genesis_file, write_genesis
from node.localnet import LocalNet

READY_TIMEOUT_S = 120.0
PORT_RACE_RETRIES = 3


class BenchError(Exception):
    """The benchmark could not run as specified (the message says which step failed)."""


BENCH_COMMIT_TIMEOUT_MS = 10


@dataclass(slots=True)
class Testnet:
    root: Path
    app_state: bytes
    validators: int = 4
    # Pause after each commit.  `fedchain testnet` writes 200 ms; the benchmarks were measured
    # at 10 ms (the node's default until it became CometBFT-like 1 s), and keep it.
    commit_timeout_ms: int = BENCH_COMMIT_TIMEOUT_MS
    net: LocalNet = field(init=False)

    def __post_init__(self) -> None:
        self.net = LocalNet(self.root, validators=self.validators, clients=0, app="fl")

    def urls(self) -> list[str]:
        return [self.net.rpc_url(i) for i in range(self.validators)]

    def start(self) -> None:
        self.net.generate(commit_timeout_ms=self.commit_timeout_ms)
        for i in range(self.validators):
            path = self.net.home(i).genesis_file
            parsed = read_genesis_file(path)
            genesis = dataclasses.replace(parsed.genesis, app_state=self.app_state)
            write_genesis(path, genesis, parsed.app)
        self.net.start_all()

    def stop(self) -> None:
        self.net.stop_all()

    def pids(self) -> list[int]:
        return [self.net.procs[i].pid for i in range(self.validators)]

    def peak_rss_bytes(self) -> list[int]:
        """VmHWM (peak resident set) of each validator process, from /proc."""
        return [_vm_hwm_bytes(pid) for pid in self.pids()]

    def cpu_seconds(self) -> list[float]:
        """User + system CPU time each validator process has used so far."""
        return [_cpu_s(pid) for pid in self.pids()]

    def diagnose(self) -> str:
        """One line per validator from its JSON log: last committed height, warnings by name."""
        out = []
        for i in range(self.validators):
            height, warnings = 0, Counter[str]()
            try:
                lines = self.net.log_file(i).read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == "block_committed":
                    height = int(entry.get("height", height))
                elif entry.get("level") in ("warning", "error"):
                    warnings[str(entry.get("event", "?")).split()[0]] += 1
            out.append(f"validator{i}: last commit h{height}, warnings {dict(warnings)}")
        return "; ".join(out)

    def log_tail(self, i: int, lines: int = 8) -> str:
        try:
            text = self.net.log_file(i).read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(line[:400] for line in text.splitlines()[-lines:])

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        """Wait for every validator; if one lost a port race with another program (ports are
        picked free but bound later), start the whole testnet again on fresh ports."""
        for attempt in range(PORT_RACE_RETRIES + 1):
            try:
                await self._wait_ready(session)
                return
            except BenchError as exc:
                if "address already in use" not in str(exc) or attempt == PORT_RACE_RETRIES:
                    raise
            self.stop()
            shutil.rmtree(self.root, ignore_errors=True)
            self.net = LocalNet(self.root, validators=self.validators, clients=0, app="fl")
            self.start()

    async def _wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = set(self.urls())
        while pending:
            for i in range(self.validators):
                if not self.net.running(i):
                    raise BenchError(f"validator {i} exited; its log ends:\n{self.log_tail(i)}")
            for url in sorted(pending):
                try:
                    async with session.get(url + "/status") as resp:
                        if resp.status == 200 and int((await resp.json())["height"]) >= 1:
                            pending.discard(url)
                except (aiohttp.ClientError, OSError, KeyError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise BenchError(f"validators not ready after {READY_TIMEOUT_S} s: {pending}")
            await asyncio.sleep(0.2)


def _cpu_s(pid: int) -> float:
    # /proc/PID/stat: the command may contain spaces, so split after its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM for pid {pid}")


async def query_round(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/query/round") as resp:
        body = await resp.read()
        if resp.status != 200:
            raise BenchError(f"{url}/query/round: HTTP {resp.status}: {body[:200]!r}")
    info = expect_seq(decode(body), "round", 64)
    return expect_int(info[0], "round", 0)


@dataclass(slots=True)
class RoundWatcher:
    """First instant (time.perf_counter) each round was seen open on each validator."""

    session: aiohttp.ClientSession
    urls: list[str]
    poll_interval_s: float = 0.0  # 0: WebSocket events; > 0: poll /query/round this often
    seen: list[dict[int, float]] = field(init=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: "asyncio.Task[None] | None" = None

    def __post_init__(self) -> None:
        self.seen = [{} for _ in self.urls]

    async def run(self) -> None:
        watch = self._poll if self.poll_interval_s > 0 else self._listen
        await asyncio.gather(*(watch(i) for i in range(len(self.urls))))

    async def start(self) -> "asyncio.Task[None]":
        """Start watching; returns once every validator's current round is known."""
        task = asyncio.create_task(self.run(), name="round-watcher")
        task.add_done_callback(lambda _t: self._changed.set())
        self._task = task
        deadline = time.perf_counter() + 30.0
        while not all(self.seen):
            if task.done():
                task.result()
            if time.perf_counter() > deadline:
                task.cancel()
                raise BenchError("round watcher did not start")
            await asyncio.sleep(0.01)
        return task

    def _saw(self, i: int, open_round: int, now: float) -> None:
        known = self.seen[i]
        for r in range(open_round + 1):
            if r not in known:
                known[r] = now
                self._changed.set()

    async def _poll(self, i: int) -> None:
        while True:
            rnd = await query_round(self.session, self.urls[i])
            self._saw(i, rnd, time.perf_counter())
            await asyncio.sleep(self.poll_interval_s)

    async def _listen(self, i: int) -> None:
        url = self.urls[i]
        async with self.session.ws_connect(url + "/ws?events=fl_round_closed") as ws:
            # Subscribed first, then asked: no round can close unseen in between.
            self._saw(i, await query_round(self.session, url), time.perf_counter())
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise BenchError(f"{url}/ws: connection ended ({msg.type.name})")
                now = time.perf_counter()
                event = json.loads(msg.data)
                if event.get("event") == "fl_round_closed":
                    self._saw(i, int(event["fl_round"]) + 1, now)
        raise BenchError(f"{url}/ws closed")

    def everywhere_at(self, round_number: int) -> float | None:
        stamps = [known.get(round_number) for known in self.seen]
        if any(s is None for s in stamps):
            return None
        return max(s for s in stamps if s is not None)

    async def wait_everywhere(self, round_number: int, timeout_s: float) -> float:
        deadline = time.perf_counter() + timeout_s
        while True:
            at = self.everywhere_at(round_number)
            if at is not None:
                return at
            if self._task is not None and self._task.done():
                self._task.result()  # re-raises why the watcher stopped
                raise BenchError("round watcher stopped")
            self._changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise BenchError(f"round {round_number} not open on every validator in time")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue
