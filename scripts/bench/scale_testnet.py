"""Scale on the real chain: 1,000 signed updates to a 100k-parameter model through a 4-validator
loopback testnet.

The updates are generated first (off the clock), then POSTed concurrently, spread evenly over
the validators.  Measured: from the instant the last submission was accepted (HTTP 202) to the
instant the closed round's new model is served by every validator (`RoundWatcher`), and each
validator's peak resident memory (VmHWM) at the end.
"""

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.chain import BenchError, RoundWatcher, Testnet
from bench.fedchain_side import Answers
from bench.scale_inprocess import ScaleSpec, make_updates, scale_app_state

SUBMIT_CONCURRENCY = 32
CLOSE_TIMEOUT_S = 120.0  # 24x the target: past this the chain has stalled


@dataclass(slots=True)
class ScaleTestnetRun:
    spec: ScaleSpec
    root: Path
    poll_interval_s: float = 0.0
    commit_timeout_ms: int = 10

    async def run(self) -> dict[str, Any]:
        net = Testnet(
            self.root, scale_app_state(self.spec), commit_timeout_ms=self.commit_timeout_ms
        )
        timeout = aiohttp.ClientTimeout(total=300)
        net.start()
        try:
            connector = aiohttp.TCPConnector(limit=SUBMIT_CONCURRENCY + 16)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await net.wait_ready(session)
                urls = net.urls()
                chain_id = str((await (await session.get(urls[0] + "/status")).json())["chain_id"])
                answers = {}
                for path in ("model", "round"):
                    async with session.get(f"{urls[0]}/query/{path}") as resp:
                        answers[path] = await resp.read()
                t0 = time.perf_counter()
                txs = make_updates(self.spec, Answers(chain_id, answers), chain_id)
                generate_s = time.perf_counter() - t0
                rss_before = net.peak_rss_bytes()
                watcher = RoundWatcher(session, urls, self.poll_interval_s)
                watch = await watcher.start()
                cpu_before = net.cpu_seconds()
                try:
                    first, last = await self._submit(session, urls, txs)
                    try:
                        everywhere = await watcher.wait_everywhere(1, CLOSE_TIMEOUT_S)
                    except BenchError as exc:
                        raise BenchError(
                            f"{exc} ({CLOSE_TIMEOUT_S:.0f} s); {net.diagnose()}"
                        ) from None
                    cpu_used = [a - b for a, b in zip(net.cpu_seconds(), cpu_before, strict=True)]
                    first_seen = min(known[1] for known in watcher.seen)
                finally:
                    watch.cancel()
                    await asyncio.gather(watch, return_exceptions=True)
            peak_rss = net.peak_rss_bytes()
        finally:
            net.stop()
        return {
            "mode": "4-validator loopback testnet, clients over RPC",
            "clients": self.spec.clients,
            "parameters": self.spec.parameters,
            "rule": self.spec.rule,
            "delta_bits": self.spec.bits,
            "tx_bytes": len(txs[0]),
            "generate_s": generate_s,
            "submit_s": last - first,
            "last_submit_to_model_everywhere_s": everywhere - last,
            "last_submit_to_model_first_validator_s": first_seen - last,
            "first_submit_to_model_everywhere_s": everywhere - first,
            "poll_interval_s": self.poll_interval_s,
            "commit_timeout_ms": self.commit_timeout_ms,
            "validator_rss_before_submit_bytes": rss_before,
            "validator_peak_rss_bytes": peak_rss,
            "validator_cpu_s": cpu_used,
        }

    async def _submit(
        self, session: aiohttp.ClientSession, urls: list[str], txs: list[bytes]
    ) -> tuple[float, float]:
        gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)
        accepted_at: list[float] = []

        async def post(i: int, tx: bytes) -> None:
            async with (
                gate,
                session.post(
                    urls[i % len(urls)] + "/txs",
                    data=tx,
                    headers={"Content-Type": "application/octet-stream"},
                ) as resp,
            ):
                body = await resp.read()
                if resp.status != 202:
                    raise BenchError(f"update {i}: HTTP {resp.status}: {body[:300]!r}")
                accepted_at.append(time.perf_counter())

        first = time.perf_counter()
        await asyncio.gather(*(post(i, tx) for i, tx in enumerate(txs)))
        return first, max(accepted_at)
