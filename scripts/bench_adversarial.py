#!/usr/bin/env python3
"""The attacks of tests/adversarial, longer, against a 4-validator LocalNet with the DEFAULT node
config (loopback only; every attack bounded in count and in time).

    .venv/bin/python scripts/bench_adversarial.py [--seconds 60] [--only NAME[,NAME...]]
        [--app fl|kv] [--byzantine-votes-per-s N]

For each attack: blocks/s in a window of `--seconds` right before it, then under it (the same
run, the same validators), the peak RSS of each running validator during it, and how long the
node took to disconnect the offender (where the attack has one).  Prints one markdown row per
attack (the table of docs/benchmarks.md, "Under attack").

  memory_frames     streams declaring 64 MiB messages and sending 60 MiB (issue 13, attack 1)
  ping_flood        yamux pings whose replies are never read (attack 3)
  slot_exhaustion   ~330 handshaken idle strangers from 8 loopback /24s (attack 2)
  mempool_flood     nonce-gapped submit_update txs from fresh keys over RPC (attack 4)
  tx_spam           forged-signature txs on the tx gossip topic, fresh identities (attack 5)
  rpc_uploads       24 concurrent 30 MiB uploads that never finish (attack 6)
  rpc_slow_headers  40 connections sending headers one byte at a time (attack 6)
  round_flood       forged/garbage high-round consensus messages from strangers and signed
                    far-ahead votes, as fast as it can, from a byzantine validator 3 that dials
                    again whenever it is cut off (last: it stops validator 3)

The attackers run in this process, on the same cores as the nodes: its CPU seconds during the
attack are printed in the notes (on a 2-core machine they are the nodes' loss too).

The attack code is the tests' own (tests/adversarial/attacks.py and the test modules).
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.keys import read_key
from node.localnet import LocalNet
from node.p2p.errors import P2PError
from node.rpc.client import RpcClient, RpcError
from tests.adversarial import attacks
from tests.adversarial.conftest import MiB, rss_bytes

ATTACKS = (
    "memory_frames",
    "ping_flood",
    "slot_exhaustion",
    "mempool_flood",
    "tx_spam",
    "rpc_uploads",
    "rpc_slow_headers",
    "round_flood",
)
VALIDATORS = 4
SAMPLE_S = 0.25


@dataclass(slots=True)
class Row:
    attack: str
    before_bps: float = 0.0
    during_bps: float = 0.0
    rss_peak: dict[int, int] = field(default_factory=dict)
    disconnect_s: list[float] = field(default_factory=list)
    note: str = ""
    attacker_cpu_s: float = 0.0

    def markdown(self) -> str:
        kept = self.during_bps / self.before_bps if self.before_bps else 0.0
        rss = " / ".join(f"{self.rss_peak[i] // MiB}" for i in sorted(self.rss_peak))
        if self.disconnect_s:
            cut = (
                f"{statistics.median(self.disconnect_s):.2f} s median, "
                f"{max(self.disconnect_s):.2f} max (n={len(self.disconnect_s)})"
            )
        else:
            cut = "n/a"
        return (
            f"| {self.attack} | {self.before_bps:.2f} -> {self.during_bps:.2f} ({kept:.0%}) "
            f"| {rss} | {cut} | {self.note}; attacker CPU {self.attacker_cpu_s:.1f} s |"
        )


async def height(net: LocalNet, i: int = 0) -> int:
    async with RpcClient(net.rpc_url(i), timeout_ms=10_000) as client:
        return int((await client.status())["height"])


async def until(stop_at: float) -> None:
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))


# ---- the attacks: each runs until `stop` and fills in its row ---------------------------------

Attack = Callable[[LocalNet, asyncio.Event, Row], Coroutine[Any, Any, None]]


async def _connection_after_connection(
    stop: asyncio.Event,
    row: Row,
    attack: Callable[[str], Coroutine[Any, Any, tuple[Any, float | None]]],
    second_octet: int,
) -> int:
    """Run `attack` from a fresh loopback address each time until `stop`; record when the node
    cut each connection.  Returns how many connections were made."""
    n = 0
    while not stop.is_set():
        n += 1
        try:
            _, cut = await attack(f"127.{second_octet}.{n // 200}.{2 + n % 200}")
        except (P2PError, OSError) as exc:
            row.note = f"attacker refused: {type(exc).__name__}"
            await asyncio.sleep(0.5)
            continue
        if cut is not None:
            row.disconnect_s.append(cut)
    return n


async def memory_frames(net: LocalNet, stop: asyncio.Event, row: Row) -> None:
    target = attacks.net_target(net, 0)
    n = await _connection_after_connection(stop, row, lambda ip: attacks.big_frames(target, ip), 21)
    row.note = row.note or f"{n} connections, 16 x 60 MiB each"


async def ping_flood(net: LocalNet, stop: asyncio.Event, row: Row) -> None:
    target = attacks.net_target(net, 0)
    n = await _connection_after_connection(stop, row, lambda ip: attacks.ping_flood(target, ip), 22)
    row.note = row.note or f"{n} connections"


async def slot_exhaustion(net: LocalNet, stop: asyncio.Event, row: Row) -> None:
    from tests.adversarial import test_slot_exhaustion as slots

    nodes = list(range(VALIDATORS))
    targets = {i: (attacks.net_target(net, i).p2p_port, slots.peer_id_of(net, i)) for i in nodes}
    attack = slots.Attack(targets)
    try:
        await slots.run_attack(attack, slots.all_slots(nodes), stop)
    finally:
        for tcp, _, _ in attack.open.values():
            tcp.abort()
    row.note = (
        f"{attack.attempts} handshakes, {attack.refused} refused, "
        f"held at most {max(attack.held_max.values(), default=0)} per node"
    )


async def mempool_flood(net: LocalNet, stop: asyncio.Event, row: Row) -> None:
    from tests.adversarial import test_mempool_flood as mempool

    answers = await mempool.flood(net, stop)
    row.note = "answers " + ", ".join(f"{k} {v}" for k, v in sorted(answers.items()))


async def tx_spam(net: LocalNet, stop: asyncio.Event, row: Row) -> None:
    target = attacks.net_target(net, 0)
    n = sent = 0
    while not stop.is_set():
        n += 1
        try:
            count, cut = await attacks.gossip_forged_txs(
                target, f"127.23.{n // 200}.{2 + n % 200}", 10, 0.2
            )
        except (P2PError, OSError, AssertionError) as exc:
            row.note = f"attacker refused: {type(exc).__name__}"
            await asyncio.sleep(0.5)
            continue
        sent += count
        if cut is not None:
            row.disconnect_s.append(cut)
    row.note = row.note or f"{n} identities, {sent} forged txs"


async def rpc_uploads(net: LocalNet, stop: asyncio.Event, row: Row) -> None:
    from tests.adversarial import test_rpc_attacks as rpc

    host, port = rpc.host_port(net)
    waves = stuck = 0
    while not stop.is_set():
        waves += 1
        wave_stop = asyncio.Event()
        uploads = [
            asyncio.create_task(rpc.stalled_upload(host, port, wave_stop))
            for _ in range(rpc.UPLOADS)
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10.0):
                await stop.wait()
        wave_stop.set()
        # A close waits for the unsent bytes the node never took: give it a moment, then drop.
        _, pending = await asyncio.wait(uploads, timeout=5.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*uploads, return_exceptions=True)
        stuck += len(pending)
    row.note = f"{waves} waves of {rpc.UPLOADS} x 28 MiB, held 10 s each ({stuck} closes dropped)"


async def rpc_slow_headers(net: LocalNet, stop: asyncio.Event, row: Row) -> None:
    from tests.adversarial import test_rpc_attacks as rpc

    host, port = rpc.host_port(net)
    waves = 0
    while not stop.is_set():
        waves += 1
        row.disconnect_s += await attacks.slow_headers(host, port, 40, stop)
    row.note = f"{waves} waves of 40 connections, 1 byte / 0.5 s"


async def round_flood(
    net: LocalNet, stop: asyncio.Event, row: Row, votes_per_s: float | None = None
) -> None:
    node_key = read_key(net.home(3).node_key_file)
    validator_key = read_key(net.home(3).validator_key_file)
    targets = [attacks.net_target(net, i) for i in range(3)]
    flood = attacks.RoundFlood()
    seen = {"height": 0, "round": 0}

    async def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(RpcError, OSError, TimeoutError):
                async with RpcClient(net.rpc_url(0), timeout_ms=2_000) as client:
                    status = await client.status()
                seen["height"] = int(status["consensus_height"])
                seen["round"] = max(seen["round"], int(status["round"]))
            await asyncio.sleep(0.1)

    async with RpcClient(net.rpc_url(0), timeout_ms=10_000) as client:
        seen["height"] = int((await client.status())["consensus_height"])
    sampler = asyncio.create_task(sample())
    await asyncio.gather(
        attacks.forgers(targets, flood, stop, identities_max=10_000),
        attacks.byzantine(
            targets,
            node_key,
            validator_key,
            lambda: seen["height"],
            lambda: seen["round"],
            flood,
            stop,
            frames_max=10_000_000,
            votes_per_s=votes_per_s,
            redial=True,
        ),
    )
    await sampler
    row.disconnect_s = [
        o.disconnected_after_s for o in flood.offenders if o.disconnected_after_s is not None
    ]
    never = sum(o.disconnected_after_s is None for o in flood.offenders)
    cuts = flood.byzantine_cuts
    cut = (
        f"cut off {len(cuts)} times, after {statistics.median(c.after_s for c in cuts):.2f} s "
        f"median"
        if cuts
        else "never cut off"
    )
    row.note = (
        f"validator 3 byzantine ({flood.byzantine_sent} signed votes, {cut}); "
        f"{len(flood.offenders)} forgers ({never} not cut off); highest round {seen['round']}"
    )


ROUTINES: dict[str, Attack] = {
    "memory_frames": memory_frames,
    "ping_flood": ping_flood,
    "slot_exhaustion": slot_exhaustion,
    "mempool_flood": mempool_flood,
    "tx_spam": tx_spam,
    "rpc_uploads": rpc_uploads,
    "rpc_slow_headers": rpc_slow_headers,
    "round_flood": round_flood,
}


async def measure(net: LocalNet, name: str, seconds: float, votes_per_s: float | None) -> Row:
    row = Row(name)
    if name == "round_flood":  # validator 3 turns byzantine: the baseline is without it too
        await asyncio.to_thread(net.stop, 3)
        await asyncio.sleep(2.0)
    start = await height(net)
    await asyncio.sleep(seconds)
    row.before_bps = (await height(net) - start) / seconds
    stop = asyncio.Event()
    cpu0 = time.process_time()
    routine = ROUTINES[name]
    if name == "round_flood" and votes_per_s is not None:
        task = asyncio.create_task(round_flood(net, stop, row, votes_per_s))
    else:
        task = asyncio.create_task(routine(net, stop, row))
    start, t0 = await height(net), time.monotonic()
    stop_at = t0 + seconds
    while time.monotonic() < stop_at and not task.done():
        for i, proc in net.procs.items():
            if proc.poll() is None:
                row.rss_peak[i] = max(row.rss_peak.get(i, 0), rss_bytes(proc.pid))
        await asyncio.sleep(SAMPLE_S)
    await until(stop_at)
    end, t1 = await height(net), time.monotonic()
    row.during_bps = (end - start) / (t1 - t0)
    row.attacker_cpu_s = time.process_time() - cpu0
    stop.set()
    try:
        async with asyncio.timeout(30.0):
            await task
    except TimeoutError:
        row.note += " (attacker did not stop in 30 s)"
    await asyncio.sleep(3.0)  # let the node settle before the next baseline
    return row


async def run(
    names: list[str], seconds: float, app: str = "fl", votes_per_s: float | None = None
) -> list[Row]:
    root = Path(tempfile.mkdtemp(prefix="fedchain-bench-adversarial-"))
    net = LocalNet(root, validators=VALIDATORS, app=app)
    net.generate()  # the testnet's defaults: nothing tuned for the attacks
    net.start_all()
    rows = []
    try:
        async with RpcClient(net.rpc_url(0)) as client:
            await client.wait_for_height(3, 120_000)
        for name in names:
            row = await measure(net, name, seconds, votes_per_s)
            print(row.markdown(), flush=True)
            rows.append(row)
    finally:
        codes = net.stop_all()
        print(f"exit codes {codes}; logs under {root}", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--only", default=",".join(ATTACKS))
    # kv: no slashing, so a byzantine validator's equivocating vote flood is never ended by
    # the app (mempool_flood and tx_spam need the FL app's txs).
    parser.add_argument("--app", choices=("fl", "kv"), default="fl")
    # round_flood's byzantine validator paced (default: as fast as it can sign): a pace under
    # the nodes' per-peer budget (node/msgbudget.py) is never banned and costs what it costs.
    parser.add_argument("--byzantine-votes-per-s", type=float, default=None)
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(ATTACKS))
    if unknown:
        parser.error(f"unknown attack(s) {unknown}; known: {', '.join(ATTACKS)}")
    names = [n for n in ATTACKS if n in names]  # round_flood stops validator 3: always last
    load = os.getloadavg()[0]
    print(
        f"<!-- {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, --seconds {args.seconds:g}, "
        f"app {args.app}, byzantine votes/s {args.byzantine_votes_per_s or 'unpaced'}, "
        f"{os.cpu_count()} cores, load {load:.1f} -->"
    )
    print("| attack | blocks/s unattacked -> under attack (kept) | peak RSS MiB per node "
          "| disconnect | notes |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |", flush=True)
    asyncio.run(run(names, args.seconds, args.app, args.byzantine_votes_per_s))


if __name__ == "__main__":
    main()
