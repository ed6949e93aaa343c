#!/usr/bin/env python3
"""Soak: a 4-validator FL testnet for `--minutes` under churn and attack, RSS and disk sampled.

    nice -n 5 .venv/bin/python scripts/bench_soak.py --minutes 30 \\
        --json docs/bench-results/soak-<date>.json --png docs/soak.png

The testnet is the demo's (`LocalNet` with the FL app, clients bonded at genesis, some of them
FL attackers), its validators and clients real processes started by the demo's own code.  While
it runs:
  - validator churn: every `--validator-churn-s` one of `--churn-validators` (not node 0: it is
    the long-lived reference whose RSS line has no restarts in it) is SIGKILLed or SIGTERMed
    (seeded choice) and started again `--validator-down-s` later; at most one is down at a time;
  - client churn: every `--client-churn-s` one client is SIGKILLed and restarted; a client that
    exits on its own (its validator was down) is restarted too and counted;
  - stranger attacks: every `--attack-every-s`, one of scripts/bench_adversarial.py's routines
    (p2p and RPC attacks of tests/adversarial, aimed at node 0, or at all nodes for slot
    exhaustion) runs for `--attack-s`;
  - every `--sample-s`: RSS (/proc) and the on-disk size of each validator's home (block file,
    SQLite with its -wal/-shm, consensus WAL, log), its height and FL round, and the load average
    (what `uptime` prints; its full line every minute);
  - every `--accuracy-every-s`: the accuracy of the chain's current model on held-out digits.

At the end the churn stops, every validator runs, all are waited to a common height and their
block hashes and app hashes there are compared.  The JSON holds every sample and event; the
PNG draws RSS, disk and height per validator over time with restarts and attacks marked.

Trend: after `--warmup-s`, one least-squares slope per validator in MiB/hour.  RSS falls at a
restart, so its fit has one intercept per process incarnation and a common slope, and skips
each incarnation's first `--restart-warmup-s`; disk is one series.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_adversarial  # noqa: E402

from fl.client.datasets import Dataset, load  # noqa: E402
from fl.client.trainers import Trainer, make_trainer  # noqa: E402
from node.apps import FL_DATASET, FL_TRAINER  # noqa: E402
from node.commands.demo import chain_accuracy, start_client, wait_healthy  # noqa: E402
from node.localnet import LocalNet, terminate_all  # noqa: E402
from node.rpc.client import RpcClient, RpcError  # noqa: E402
from tests.adversarial.conftest import MiB, rss_bytes  # noqa: E402

HOUR_S = 3600.0
# The parts of a home's size that get their own slope (see disk_usage).
DISK_PARTS = ("blocks_dat", "sqlite", "cs_wal", "log")
# RSS floor: the minimum of each window this long (attack peaks are shorter than this).
# What each validator's /metrics says about its heap (node/allocator.py heap_stats): bytes in
# use grow with a leak, free bytes with memory freed but not yet returned to the OS.
HEAP_METRICS = {
    "fedchain_heap_in_use_bytes": "in_use",
    "fedchain_heap_free_bytes": "free",
    "fedchain_python_allocated_blocks": "python_blocks",
}
FLOOR_WINDOW_S = 180.0
# bench_adversarial's routines minus round_flood (it turns validator 3 byzantine for good).
STRANGER_ATTACKS = (
    "memory_frames",
    "ping_flood",
    "tx_spam",
    "rpc_uploads",
    "rpc_slow_headers",
    "mempool_flood",
    "slot_exhaustion",
)


@dataclass(frozen=True, slots=True)
class SoakConfig:
    minutes: float = 30.0
    validators: int = 4
    clients: int = 6
    fl_attackers: int = 2
    fl_attack: str = "sign_flip_x10"
    churn_validators: tuple[int, ...] = (1, 2, 3)
    validator_churn_s: float = 150.0
    validator_down_s: float = 10.0
    # Stop churning validators after this many restarts (0: never stop), so a restarted
    # validator can be watched past its warm-up.
    validator_churn_count: int = 0
    client_churn_s: float = 60.0
    client_down_s: float = 3.0
    attacks: tuple[str, ...] = STRANGER_ATTACKS
    attack_every_s: float = 90.0
    attack_s: float = 15.0
    sample_s: float = 5.0
    accuracy_every_s: float = 60.0
    warmup_s: float = 300.0
    # A restarted validator block-syncs what it missed and refills its caches: its heap in use
    # climbed 5-7 MiB over its first 2-4 minutes, then held (run 4, docs/benchmarks.md).
    restart_warmup_s: float = 180.0
    seed: int = 1


@dataclass(slots=True)
class Soak:
    """The run's record: what the JSON holds."""

    config: SoakConfig
    root: str
    started_utc: str = ""
    cores: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    uptime: list[dict[str, Any]] = field(default_factory=list)
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    trend: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # what code ran (commit, settings), shown in the figure's title

    def event(self, t: float, kind: str, target: int | None = None, **detail: Any) -> None:
        self.events.append({"t": round(t, 2), "kind": kind, "target": target, **detail})

    def restarts(self, kind: str) -> int:
        return sum(1 for e in self.events if e["kind"] == kind)


# ---- measuring -----------------------------------------------------------------------------


def disk_usage(home: Path) -> dict[str, int]:
    """Bytes on disk of one node's home, by part (apparent sizes: what the node wrote)."""

    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    data = home / "data"
    parts = {
        "blocks_dat": size(data / "blocks.dat"),
        "sqlite": sum(size(data / f"blocks.sqlite{s}") for s in ("", "-wal", "-shm")),
        "cs_wal": sum(size(p) for p in data.glob("cs.wal*")),
        "log": size(home / "node.log"),
    }
    known = parts["blocks_dat"] + parts["sqlite"] + parts["cs_wal"]
    total = sum(size(p) for p in data.rglob("*") if p.is_file())
    parts["other_data"] = max(0, total - known)
    parts["data_total"] = total
    return parts


def trend_slope(points: list[tuple[float, float, int]]) -> float | None:
    """Least-squares slope of (t, y) with one intercept per group (the third field): a
    restart's drop in RSS is a new intercept, not a negative trend.  None without two distinct
    times inside one group."""
    groups: dict[int, list[tuple[float, float]]] = {}
    for t, y, g in points:
        groups.setdefault(g, []).append((t, y))
    sxy = sxx = 0.0
    for pts in groups.values():
        mt = sum(t for t, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        sxy += sum((t - mt) * (y - my) for t, y in pts)
        sxx += sum((t - mt) ** 2 for t, _ in pts)
    return sxy / sxx if sxx > 0 else None


def window_minima(
    points: list[tuple[float, float, int]], window: float
) -> list[tuple[float, float, int]]:
    """The lowest point of each `window` of t within each group: the floor an attack's
    transient peak sits on (a leak raises the floor; a buffer that is freed does not)."""
    lowest: dict[tuple[int, int], tuple[float, float, int]] = {}
    for t, y, g in points:
        key = (g, int(t // window))
        if key not in lowest or y < lowest[key][1]:
            lowest[key] = (t, y, g)
    return sorted(lowest.values())


def trends(soak: Soak) -> dict[str, Any]:
    """Per validator: RSS and disk slopes in MiB/hour after warm-up, and RSS figures."""
    cfg = soak.config
    out: dict[str, Any] = {}
    for i in range(cfg.validators):
        rss: list[tuple[float, float, int]] = []
        heap: list[tuple[float, float, int]] = []
        blocks: list[tuple[float, float, int]] = []
        disk: list[tuple[float, float, int]] = []
        parts: dict[str, list[tuple[float, float, int]]] = {p: [] for p in DISK_PARTS}
        for s in soak.samples:
            v = s["validators"][str(i)]
            if s["t"] < cfg.warmup_s:
                continue
            disk.append((s["t"] / HOUR_S, v["disk"]["data_total"] / MiB, 0))
            for part, points in parts.items():
                points.append((s["t"] / HOUR_S, v["disk"][part] / MiB, 0))
            if v["rss_bytes"] is not None and s["t"] - v["started_t"] >= cfg.restart_warmup_s:
                rss.append((s["t"] / HOUR_S, v["rss_bytes"] / MiB, v["incarnation"]))
                if v.get("heap"):
                    life = v["incarnation"]
                    heap.append((s["t"] / HOUR_S, v["heap"]["in_use"] / MiB, life))
                    blocks.append((s["t"] / HOUR_S, v["heap"]["python_blocks"] / 1000, life))
        all_rss = [
            s["validators"][str(i)]["rss_bytes"] / MiB
            for s in soak.samples
            if s["validators"][str(i)]["rss_bytes"] is not None
        ]
        rss_slope, disk_slope = trend_slope(rss), trend_slope(disk)
        floor_slope = trend_slope(window_minima(rss, FLOOR_WINDOW_S / HOUR_S))
        out[str(i)] = {
            "rss_mib_per_hour": None if rss_slope is None else round(rss_slope, 2),
            "rss_floor_mib_per_hour": None if floor_slope is None else round(floor_slope, 2),
            "rss_points": len(rss),
            "rss_incarnations": len({g for _, _, g in rss}),
            "rss_mib_after_warmup_first": round(rss[0][1], 1) if rss else None,
            "rss_mib_last": round(all_rss[-1], 1) if all_rss else None,
            "rss_mib_max": round(max(all_rss), 1) if all_rss else None,
            "heap_in_use_mib_per_hour": None if (hs := trend_slope(heap)) is None else round(hs, 2),
            "heap_in_use_mib_first_last": [round(heap[0][1], 1), round(heap[-1][1], 1)]
            if heap
            else None,
            "python_kblocks_per_hour": None
            if (bs := trend_slope(blocks)) is None
            else round(bs, 1),
            "disk_mib_per_hour": None if disk_slope is None else round(disk_slope, 2),
            "disk_mib_end": round(disk[-1][1], 2) if disk else None,
            "disk_parts_mib_per_hour": {
                part: None if (slope := trend_slope(points)) is None else round(slope, 2)
                for part, points in parts.items()
            },
        }
    return out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# ---- the run ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Runner:
    cfg: SoakConfig
    net: LocalNet
    soak: Soak
    rng: random.Random
    t0: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    clients: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    # A validator the churn loop has down on purpose (the sampler must not call it a crash).
    down: set[int] = field(default_factory=set)
    clients_down: set[int] = field(default_factory=set)
    incarnation: dict[int, int] = field(default_factory=dict)
    started_t: dict[int, float] = field(default_factory=dict)
    client_timeout_s: float = 0.0
    dataset: tuple[Dataset, Trainer] | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start_validator(self, i: int) -> None:
        self.net.start(i)
        self.incarnation[i] = self.incarnation.get(i, -1) + 1
        self.started_t[i] = self.now()

    def start_client(self, j: int) -> None:
        self.clients[j] = start_client(
            self.net.root / f"client{j}", 1_000_000, self.client_timeout_s
        )

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the run is stopping: False once it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return not self.stop.is_set()

    # -- loops -------------------------------------------------------------------------------

    async def sampler(self) -> None:
        next_uptime = 0.0
        while True:
            await self.sample()
            if self.now() >= next_uptime:
                line = await asyncio.to_thread(uptime)
                self.soak.uptime.append({"t": round(self.now(), 1), "uptime": line})
                next_uptime += 60.0
            if not await self.sleep(self.cfg.sample_s):
                return

    async def sample(self) -> None:
        t = self.now()

        async def status(i: int) -> dict[str, Any] | None:
            if not self.net.running(i):
                return None
            try:
                async with RpcClient(self.net.rpc_url(i), timeout_ms=3_000) as client:
                    return await client.status()
            except RpcError:
                return None

        statuses = await asyncio.gather(*(status(i) for i in range(self.cfg.validators)))
        heaps = await asyncio.gather(*(self.heap(i) for i in range(self.cfg.validators)))
        validators: dict[str, Any] = {}
        for i, st in enumerate(statuses):
            proc = self.net.procs.get(i)
            rss: int | None = None
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError, AssertionError):
                    rss = rss_bytes(proc.pid)
            elif proc is not None and i not in self.down:
                # Exited while nobody stopped it: a crash.  Record it and start it again.
                self.soak.event(t, "validator_crashed", i, returncode=proc.returncode)
                self.start_validator(i)
            validators[str(i)] = {
                "rss_bytes": rss,
                "incarnation": self.incarnation.get(i, 0),
                "started_t": round(self.started_t.get(i, 0.0), 2),
                "height": int(st["height"]) if st else None,
                "fl_round": int(st.get("fl_round", 0)) if st else None,
                "peers": int(st.get("peers", 0)) if st else None,
                "mempool_txs": int(st.get("mempool_txs", 0)) if st else None,
                "disk": disk_usage(self.net.home(i).root),
                "heap": heaps[i],
            }
        for j, proc in self.clients.items():
            if proc.poll() is not None and j not in self.clients_down:
                self.soak.event(t, "client_exited", j, returncode=proc.returncode)
                self.start_client(j)
        self.soak.samples.append(
            {
                "t": round(t, 2),
                "load": [round(x, 2) for x in os.getloadavg()],
                "validators": validators,
            }
        )

    async def heap(self, i: int) -> dict[str, int] | None:
        """Validator i's heap figures from its /metrics (None: down, or not glibc)."""
        if not self.net.running(i):
            return None
        try:
            timeout = aiohttp.ClientTimeout(total=3.0)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.net.metrics_url(i)) as resp,
            ):
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in HEAP_METRICS:
                values[HEAP_METRICS[name]] = int(float(value))
        return values if len(values) == len(HEAP_METRICS) else None

    async def validator_churn(self) -> None:
        restarts = 0
        while await self.sleep(self.cfg.validator_churn_s):
            if 0 < self.cfg.validator_churn_count <= restarts:
                return
            restarts += 1
            i = self.rng.choice(self.cfg.churn_validators)
            how = self.rng.choice(("SIGKILL", "SIGTERM"))
            self.down.add(i)
            try:
                if how == "SIGKILL":
                    await asyncio.to_thread(self.net.kill, i)
                    code = self.net.procs[i].returncode
                else:
                    code = await asyncio.to_thread(self.net.stop, i)
                self.soak.event(self.now(), "validator_stopped", i, signal=how, returncode=code)
                await self.sleep(self.cfg.validator_down_s)
                self.start_validator(i)
                self.soak.event(self.now(), "validator_started", i)
            finally:
                self.down.discard(i)

    async def client_churn(self) -> None:
        while await self.sleep(self.cfg.client_churn_s):
            j = self.rng.randrange(self.cfg.clients)
            proc = self.clients[j]
            self.clients_down.add(j)
            try:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    await asyncio.to_thread(proc.wait)
                self.soak.event(self.now(), "client_killed", j)
                await self.sleep(self.cfg.client_down_s)
                self.start_client(j)
            finally:
                self.clients_down.discard(j)

    async def strangers(self) -> None:
        k = 0
        while await self.sleep(self.cfg.attack_every_s):
            name = self.cfg.attacks[k % len(self.cfg.attacks)]
            k += 1
            row = bench_adversarial.Row(name)
            stop = asyncio.Event()
            start = self.now()
            task = asyncio.create_task(bench_adversarial.ROUTINES[name](self.net, stop, row))
            await asyncio.wait([task], timeout=self.cfg.attack_s)
            stop.set()
            error = ""
            try:
                async with asyncio.timeout(30.0):
                    await task
            except TimeoutError:
                error = "did not stop in 30 s"
            except Exception as exc:  # a target restarted under it: record, go on
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
            self.soak.event(
                start,
                "attack",
                0,
                name=name,
                end_t=round(self.now(), 2),
                note=row.note,
                disconnects=len(row.disconnect_s),
                error=error,
            )

    async def accuracy_once(self) -> None:
        if self.dataset is None:
            ds = load(FL_DATASET, seed=0)
            self.dataset = (ds, make_trainer(FL_TRAINER, ds.n_features, ds.n_classes))
        ds, trainer = self.dataset
        async with RpcClient(self.net.rpc_url(0), timeout_ms=10_000) as client:
            version, model_hash, acc = await chain_accuracy(
                client, None, trainer, ds.x_test, ds.y_test
            )
        self.soak.accuracy.append(
            {
                "t": round(self.now(), 1),
                "model_version": version,
                "model_hash": model_hash.hex(),
                "accuracy": round(acc, 4),
            }
        )

    async def accuracy(self) -> None:
        while True:
            try:
                await self.accuracy_once()
            except RpcError as exc:
                self.soak.event(self.now(), "accuracy_unavailable", 0, error=str(exc)[:200])
            if not await self.sleep(self.cfg.accuracy_every_s):
                return

    # -- the end -----------------------------------------------------------------------------

    async def agree(self, timeout_s: float = 180.0) -> dict[str, Any]:
        """Every validator at one common height: are their block and app hashes equal?"""
        for i in range(self.cfg.validators):
            if not self.net.running(i):
                self.start_validator(i)
                self.soak.event(self.now(), "validator_started", i)
        await wait_healthy(self.net, timeout_s, lambda: False)

        async def height(i: int) -> int:
            try:
                async with RpcClient(self.net.rpc_url(i), timeout_ms=3_000) as client:
                    return int((await client.status())["height"])
            except RpcError:
                return 0

        n = self.cfg.validators
        target = max(await asyncio.gather(*(height(i) for i in range(n)))) + 3
        deadline = time.monotonic() + timeout_s
        heights = [0] * n
        while time.monotonic() < deadline:
            heights = list(await asyncio.gather(*(height(i) for i in range(n))))
            if min(heights) >= target:
                break
            await asyncio.sleep(0.5)
        else:
            return {
                "common_height": target,
                "heights": heights,
                "agree": False,
                "reason": "not every validator reached the common height",
            }
        blocks = {}
        for i in range(n):
            async with RpcClient(self.net.rpc_url(i), timeout_ms=10_000) as client:
                b = await client.block(target)
            blocks[str(i)] = {"hash": b["hash"], "result_app_hash": b["result_app_hash"]}
        values = {(b["hash"], b["result_app_hash"]) for b in blocks.values()}
        return {
            "common_height": target,
            "heights": heights,
            "agree": len(values) == 1,
            "blocks": blocks,
        }


async def run_soak(
    cfg: SoakConfig,
    root: Path,
    log: Callable[[str], None] = print,
    checkpoint: Callable[[Soak], None] | None = None,
    note: str = "",
) -> Soak:
    """Run the soak in `root`; `checkpoint` gets the record so far about every 30 s (a run
    that dies late still leaves its samples)."""
    soak = Soak(
        cfg, str(root), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), os.cpu_count() or 0
    )
    soak.note = note
    net = LocalNet(
        root, validators=cfg.validators, clients=cfg.clients, attackers=cfg.fl_attackers, app="fl"
    )
    net.generate(attack=cfg.fl_attack)
    runner = Runner(cfg, net, soak, random.Random(cfg.seed))
    runner.client_timeout_s = cfg.minutes * 60 + 600
    runner.t0 = time.monotonic()
    try:
        for i in range(cfg.validators):
            runner.start_validator(i)
        await wait_healthy(net, 120.0, lambda: False)
        log(
            f"soak: {cfg.validators} validators healthy after {runner.now():.0f} s; "
            f"starting {cfg.clients} clients ({cfg.fl_attackers} attacking); logs in {root}"
        )
        for j in range(cfg.clients):
            runner.start_client(j)
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = [
            runner.sampler,
            runner.accuracy,
            runner.validator_churn,
            runner.client_churn,
        ]
        if cfg.attacks:
            loops.append(runner.strangers)
        end = runner.t0 + cfg.minutes * 60

        async def deadline() -> None:
            while time.monotonic() < end:
                await asyncio.sleep(min(30.0, max(0.0, end - time.monotonic())))
                last = soak.samples[-1] if soak.samples else None
                if last:
                    heights = [v["height"] for v in last["validators"].values()]
                    log(f"soak: t={last['t']:.0f} s heights {heights} load {last['load'][0]}")
                if checkpoint is not None:
                    checkpoint(soak)
            runner.stop.set()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(deadline())
            for loop in loops:
                tg.create_task(loop())
        soak.final = await runner.agree()
        soak.final["fl_round"] = max(
            (v["fl_round"] or 0) for s in soak.samples[-3:] for v in s["validators"].values()
        )
        with contextlib.suppress(RpcError):
            await runner.accuracy_once()
        soak.final["accuracy"] = soak.accuracy[-1] if soak.accuracy else None
    finally:
        terminate_all(runner.clients.values())
        codes = net.stop_all()
        soak.final["exit_codes"] = {str(k): v for k, v in codes.items()}
        soak.final["duration_s"] = round(runner.now(), 1)
    soak.trend = trends(soak)
    return soak


def load_soak(path: Path) -> Soak:
    """A run's record read back from its JSON (to redraw or re-summarize it)."""
    raw = json.loads(path.read_text())
    cfg = raw.pop("config")
    for key in ("churn_validators", "attacks"):
        cfg[key] = tuple(cfg[key])
    soak = Soak(SoakConfig(**cfg), **raw)
    soak.trend = trends(soak)
    return soak


# ---- reporting -------------------------------------------------------------------------------


def summary(soak: Soak) -> list[str]:
    """The findings as markdown bullets for docs/benchmarks.md."""
    final = soak.final
    loads = [s["load"][0] for s in soak.samples]
    lines = [
        f"- {final.get('duration_s', 0) / 60:.1f} min from {soak.started_utc}, "
        f"{soak.cores} cores, load average (1 min) {min(loads, default=0):.1f}-"
        f"{max(loads, default=0):.1f}, mean {sum(loads) / max(1, len(loads)):.1f}",
        f"- blocks committed: {final.get('common_height', '?')} (the common height at the end); "
        f"FL rounds closed: {final.get('fl_round', '?')}",
    ]
    acc = final.get("accuracy")
    if acc:
        lines.append(
            f"- accuracy of the chain's model at the end: {acc['accuracy']:.3f} "
            f"(model v{acc['model_version']})"
        )
    by_kind: dict[str, int] = {}
    for e in soak.events:
        by_kind[e["kind"]] = by_kind.get(e["kind"], 0) + 1
    kills = sum(
        1 for e in soak.events if e["kind"] == "validator_stopped" and e.get("signal") == "SIGKILL"
    )
    lines.append(
        f"- restarts: {by_kind.get('validator_stopped', 0)} validator ({kills} SIGKILL), "
        f"{by_kind.get('client_killed', 0)} client kills, {by_kind.get('client_exited', 0)} "
        f"clients that exited on their own (restarted), {by_kind.get('validator_crashed', 0)} "
        f"validator crashes; {by_kind.get('attack', 0)} stranger attacks"
    )
    failed = [e for e in soak.events if e["kind"] == "attack" and e.get("error")]
    if failed:
        lines.append(
            f"- attacks that ended in an error: {len(failed)} ("
            + "; ".join(f"{e['name']}: {e['error'][:80]}" for e in failed[:4])
            + ")"
        )
    agree = final.get("agree")
    lines.append(
        f"- app hash agreement at height {final.get('common_height')}: "
        + ("all validators equal" if agree else f"**NO** ({final})")
    )
    for i, t in soak.trend.items():
        lines.append(
            f"- validator {i}: RSS {t['rss_mib_per_hour']} MiB/h (floor: 3-minute minima "
            f"{t['rss_floor_mib_per_hour']} MiB/h) over {t['rss_points']} samples "
            f"({t['rss_incarnations']} process lifetimes), {t['rss_mib_after_warmup_first']} -> "
            f"{t['rss_mib_last']} MiB, max {t['rss_mib_max']}; heap in use "
            f"{t.get('heap_in_use_mib_per_hour')} MiB/h "
            f"({t.get('heap_in_use_mib_first_last')} MiB), "
            f"Python blocks {t.get('python_kblocks_per_hour')} k/h; disk {t['disk_mib_per_hour']} "
            f"MiB/h, {t['disk_mib_end']} MiB at the end ("
            + ", ".join(f"{k} {v}" for k, v in t["disk_parts_mib_per_hour"].items())
            + " MiB/h)"
        )
    return lines


def plot(soak: Soak, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = soak.config
    fig, axes = plt.subplots(4, 1, figsize=(11, 12.5), sharex=True)
    rss_ax, heap_ax, disk_ax, height_ax = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i in range(cfg.validators):
        key = str(i)
        ts = [s["t"] / 60 for s in soak.samples]
        nan = float("nan")
        rss = [
            nan if (b := s["validators"][key]["rss_bytes"]) is None else b / MiB
            for s in soak.samples
        ]
        disk = [s["validators"][key]["disk"]["data_total"] / MiB for s in soak.samples]
        heap = [
            nan if not (h := s["validators"][key].get("heap")) else h["in_use"] / MiB
            for s in soak.samples
        ]
        heights = [
            nan if (h := s["validators"][key]["height"]) is None else h for s in soak.samples
        ]
        slope = soak.trend.get(key, {})
        rss_label = (
            f" (fit {slope.get('rss_mib_per_hour')}, floor {slope.get('rss_floor_mib_per_hour')}"
            " MiB/h)"
        )
        for ax, values, suffix in (
            (rss_ax, rss, rss_label),
            (heap_ax, heap, f" ({slope.get('heap_in_use_mib_per_hour')} MiB/h)"),
            (disk_ax, disk, f" ({slope.get('disk_mib_per_hour')} MiB/h)"),
            (height_ax, heights, ""),
        ):
            ax.plot(ts, values, color=colors[i], lw=1.2, label=f"validator {i}{suffix}")
    for e in soak.events:
        if e["kind"] == "validator_stopped" or e["kind"] == "validator_crashed":
            for ax in axes:
                ax.axvline(e["t"] / 60, color=colors[e["target"]], ls=":", lw=1.0)
            rss_ax.annotate(
                (
                    "kill "
                    if e.get("signal") == "SIGKILL"
                    else "term "
                    if e.get("signal")
                    else "CRASH "
                )
                + str(e["target"]),
                (e["t"] / 60, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
                color=colors[e["target"]],
            )
        elif e["kind"] == "attack":
            for ax in axes:
                ax.axvspan(e["t"] / 60, e["end_t"] / 60, color="red", alpha=0.08, lw=0)
            disk_ax.annotate(
                e["name"],
                (e["t"] / 60, 0.02),
                xycoords=("data", "axes fraction"),
                fontsize=6,
                rotation=90,
                va="bottom",
                color="darkred",
            )
        elif e["kind"] in ("client_killed", "client_exited"):
            height_ax.plot(e["t"] / 60, 0, marker="^", color="grey", ms=4, ls="none")
    for ax in axes:
        ax.axvline(cfg.warmup_s / 60, color="black", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    load_ax = height_ax.twinx()
    load_ax.plot(
        [s["t"] / 60 for s in soak.samples],
        [s["load"][0] for s in soak.samples],
        color="grey",
        lw=0.8,
        alpha=0.7,
        label="load average (1 min)",
    )
    load_ax.set_ylabel("load average (1 min)", color="grey")
    rss_ax.set_ylabel("RSS (MiB)")
    heap_ax.set_ylabel("C heap in use (MiB)\n(mallinfo2)")
    disk_ax.set_ylabel("data dir on disk (MiB)\nblocks + SQLite + WAL")
    height_ax.set_ylabel("committed height (blocks)")
    height_ax.set_xlabel(
        "time since start (minutes); dashed: end of warm-up; dotted: validator "
        "stopped (kill/term); red: stranger attack; ^: client killed/exited"
    )
    rss_ax.legend(fontsize=8, loc="lower right", title="slope after warm-up", title_fontsize=8)
    disk_ax.legend(fontsize=8, loc="upper left", title="slope after warm-up", title_fontsize=8)
    heap_ax.legend(fontsize=8, loc="lower right", title="slope after warm-up", title_fontsize=8)
    height_ax.legend(fontsize=8, loc="upper left")
    final = soak.final
    acc = final.get("accuracy") or {}
    fig.suptitle(
        f"fedchain soak: {cfg.validators} validators, {cfg.clients} FL clients "
        f"({cfg.fl_attackers} {cfg.fl_attack}), churn + stranger attacks, "
        f"{final.get('duration_s', 0) / 60:.0f} min from {soak.started_utc}\n"
        f"{final.get('common_height')} blocks, {final.get('fl_round')} FL rounds, accuracy "
        f"{acc.get('accuracy', float('nan')):.3f}, app hashes "
        f"{'agree' if final.get('agree') else 'DIFFER'}; {soak.cores} shared cores"
        + (f"\n{soak.note}" if soak.note else ""),
        fontsize=10,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = SoakConfig()
    parser.add_argument("--minutes", type=float, default=d.minutes)
    parser.add_argument("--clients", type=int, default=d.clients)
    parser.add_argument("--fl-attackers", type=int, default=d.fl_attackers)
    parser.add_argument("--fl-attack", default=d.fl_attack)
    parser.add_argument("--churn-validators", default=",".join(map(str, d.churn_validators)))
    parser.add_argument("--validator-churn-s", type=float, default=d.validator_churn_s)
    parser.add_argument("--validator-down-s", type=float, default=d.validator_down_s)
    parser.add_argument(
        "--validator-churn-count",
        type=int,
        default=d.validator_churn_count,
        help="stop validator churn after this many restarts (0: never)",
    )
    parser.add_argument("--client-churn-s", type=float, default=d.client_churn_s)
    parser.add_argument("--client-down-s", type=float, default=d.client_down_s)
    parser.add_argument("--attacks", default=",".join(d.attacks), help="'' for none")
    parser.add_argument("--attack-every-s", type=float, default=d.attack_every_s)
    parser.add_argument("--attack-s", type=float, default=d.attack_s)
    parser.add_argument("--sample-s", type=float, default=d.sample_s)
    parser.add_argument("--accuracy-every-s", type=float, default=d.accuracy_every_s)
    parser.add_argument("--warmup-s", type=float, default=d.warmup_s)
    parser.add_argument(
        "--restart-warmup-s",
        type=float,
        help=f"skip each restarted lifetime's first seconds in the fits (default "
        f"{d.restart_warmup_s:g}; with --from-json: re-fit the run with this instead of its own)",
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--root", type=Path, help="testnet directory (default: a new temp dir)")
    parser.add_argument("--json", type=Path, help="write every sample and event here")
    parser.add_argument("--png", type=Path, help="draw RSS, disk and height here")
    parser.add_argument("--from-json", type=Path, help="no run: redraw and summarize this JSON")
    parser.add_argument("--note", default="", help="what code ran (commit...), for the title")
    args = parser.parse_args()
    if args.from_json:
        soak = load_soak(args.from_json)
        soak.note = args.note or soak.note
        if args.restart_warmup_s is not None:
            soak.config = replace(soak.config, restart_warmup_s=args.restart_warmup_s)
            soak.trend = trends(soak)
        if args.png:
            plot(soak, args.png)
        print("\n".join(summary(soak)))
        return
    attacks = tuple(a for a in args.attacks.split(",") if a)
    unknown = sorted(set(attacks) - set(bench_adversarial.ROUTINES))
    if unknown or "round_flood" in attacks:
        parser.error(f"unknown attack(s) {unknown}; known: {', '.join(STRANGER_ATTACKS)}")
    cfg = SoakConfig(
        minutes=args.minutes,
        clients=args.clients,
        fl_attackers=args.fl_attackers,
        fl_attack=args.fl_attack,
        churn_validators=tuple(int(x) for x in args.churn_validators.split(",") if x),
        validator_churn_s=args.validator_churn_s,
        validator_down_s=args.validator_down_s,
        validator_churn_count=args.validator_churn_count,
        client_churn_s=args.client_churn_s,
        client_down_s=args.client_down_s,
        attacks=attacks,
        attack_every_s=args.attack_every_s,
        attack_s=args.attack_s,
        sample_s=args.sample_s,
        accuracy_every_s=args.accuracy_every_s,
        warmup_s=args.warmup_s,
        restart_warmup_s=(
            d.restart_warmup_s if args.restart_warmup_s is None else args.restart_warmup_s
        ),
        seed=args.seed,
    )
    root = args.root or Path(tempfile.mkdtemp(prefix="fedchain-soak-"))

    def save(soak: Soak) -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(soak), separators=(",", ":")) + "\n")
            tmp.replace(args.json)

    soak = asyncio.run(run_soak(cfg, root, checkpoint=save, note=args.note))
    save(soak)
    if args.png:
        plot(soak, args.png)
    print("\n".join(summary(soak)))


if __name__ == "__main__":
    main()
