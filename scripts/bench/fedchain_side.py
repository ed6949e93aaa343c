"""Run the shared workload through a real 4-validator fedchain testnet, clients over RPC.

Each client is assigned validator (client mod 4).  Per round, every client fetches the model
from its validator (`/query/model` + `/query/round`, parsed by the SDK's `fetch_model`), trains
with the shared trainer and random stream, and submits a signed quantized update built by the
SDK's `build_update` (`POST /txs`).  The chain runs FedAvg and closes the round once it holds
one update per client.  A round's time is from the instant the round's model is open on every
validator to the instant the next one is (see `RoundWatcher`), the same "model to model"
definition the Flower side uses.  Model evaluation happens after the run, off the clock.
"""

import asyncio
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.chain import BENCH_COMMIT_TIMEOUT_MS, BenchError, RoundWatcher, Testnet
from bench.stats import gaps
from bench.workload import STREAM_QUANTIZE, Prepared, fingerprint, rng
from consensus.crypto import PrivateKey
from fl.client.quantize import float_to_units
from fl.client.sdk import RemoteModel, build_update, fetch_model
from fl.client.transport import SubmitResult
from fl.genesis import build_app_state
from fl.params import Params

ROUND_TIMEOUT_S = 300.0
ROUND_DEADLINE_MS = 100_000_000  # the bench rounds close on quorum, never on the deadline


def bench_params(clients: int) -> Params:
    return replace(
        Params(),
        rule="fedavg",
        updates_per_round=clients,
        updates_min=1,
        round_deadline_ms=ROUND_DEADLINE_MS,
    )


def app_state(prepared: Prepared) -> bytes:
    return build_app_state(
        prepared.trainer.shapes(),
        float_to_units(prepared.initial),
        bench_params(prepared.workload.clients),
    )


def client_key(client: int) -> PrivateKey:
    return PrivateKey.from_label(f"fedchain-bench-client-{client}")


def signed_update(
    prepared: Prepared,
    key: PrivateKey,
    chain_id: str,
    client: int,
    model: RemoteModel,
    params: Params,
) -> bytes:
    """What client `client` submits for the model's open round (its nonce is the round number)."""
    trained = prepared.local_train(client, model.round, model.weights)
    return build_update(
        key,
        chain_id,
        model.round,  # one update per round from nonce 0: the nonce is the round number
        model,
        trained - model.weights,
        prepared.samples(client),
        params,
        rng=rng(prepared.workload, client, model.round, STREAM_QUANTIZE),
    )


@dataclass(frozen=True, slots=True)
class Answers:
    """A read-only Transport over answers already fetched, so the SDK's parser does the work."""

    chain: str
    answers: dict[str, bytes]

    def chain_id(self) -> str:
        return self.chain

    def query(self, path: str) -> bytes:
        return self.answers[path]

    def submit(self, tx: bytes) -> SubmitResult:
        raise BenchError("Answers is read-only")

    def wait_for_round(self, round_number: int, blocks_max: int) -> None:
        raise BenchError("Answers is read-only")


async def _get(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise BenchError(f"GET {url}: HTTP {resp.status}: {body[:200]!r}")
        return body


async def fetch(session: aiohttp.ClientSession, url: str, chain_id: str) -> RemoteModel:
    model, rnd = await asyncio.gather(
        _get(session, url + "/query/model"), _get(session, url + "/query/round")
    )
    return fetch_model(Answers(chain_id, {"model": model, "round": rnd}))


@dataclass(slots=True)
class FedchainRun:
    prepared: Prepared
    root: Path
    poll_interval_s: float = 0.0
    commit_timeout_ms: int = BENCH_COMMIT_TIMEOUT_MS

    async def run(self) -> dict[str, Any]:
        workload = self.prepared.workload
        net = Testnet(self.root, app_state(self.prepared), commit_timeout_ms=self.commit_timeout_ms)
        params = bench_params(workload.clients)
        keys = [client_key(i) for i in range(workload.clients)]
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=64)
        timeout = aiohttp.ClientTimeout(total=120)
        started = time.perf_counter()
        net.start()
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await net.wait_ready(session)
                ready_s = time.perf_counter() - started
                status = await (await session.get(net.urls()[0] + "/status")).json()
                chain_id = str(status["chain_id"])
                watcher = RoundWatcher(session, net.urls(), self.poll_interval_s)
                watch = await watcher.start()
                cpu_before = net.cpu_seconds()
                try:
                    record = await self._rounds(session, net, watcher, keys, chain_id, params)
                    cpu_used = [a - b for a, b in zip(net.cpu_seconds(), cpu_before, strict=True)]
                finally:
                    watch.cancel()
                    await asyncio.gather(watch, return_exceptions=True)
                heights = [
                    int((await (await session.get(u + "/status")).json())["height"])
                    for u in net.urls()
                ]
            peak_rss = net.peak_rss_bytes()
        finally:
            net.stop()
        return {
            "side": "fedchain",
            "workload": workload.as_dict(),
            "fingerprint": fingerprint(self.prepared),
            "trainer": self.prepared.trainer_settings(),
            "validators": net.validators,
            "rule": params.rule,
            "poll_interval_s": self.poll_interval_s,
            "commit_timeout_ms": self.commit_timeout_ms,
            "startup_s": ready_s,
            "final_heights": heights,
            "validator_peak_rss_bytes": peak_rss,
            "validator_cpu_s_per_round": [c / workload.rounds for c in cpu_used],
            **record,
        }

    async def _rounds(
        self,
        session: aiohttp.ClientSession,
        net: Testnet,
        watcher: RoundWatcher,
        keys: list[PrivateKey],
        chain_id: str,
        params: Params,
    ) -> dict[str, Any]:
        workload, urls = self.prepared.workload, net.urls()
        open_at = [await watcher.wait_everywhere(0, ROUND_TIMEOUT_S)]
        models: list[np.ndarray] = []
        hashes: list[str] = []
        submitted_at: list[float] = []
        for r in range(workload.rounds):
            submitted = await asyncio.gather(
                *(
                    self._client_round(
                        session, urls[i % len(urls)], keys[i], i, r, chain_id, params
                    )
                    for i in range(workload.clients)
                )
            )
            submitted_at.append(time.perf_counter())
            models.append(submitted[0].weights)
            hashes.append(submitted[0].hash.hex())
            if any(m.hash != submitted[0].hash for m in submitted):
                raise BenchError(f"round {r}: clients trained from different models")
            open_at.append(await watcher.wait_everywhere(r + 1, ROUND_TIMEOUT_S))
        final = await fetch(session, urls[0], chain_id)
        if final.round != workload.rounds:
            raise BenchError(f"expected round {workload.rounds} open, found {final.round}")
        models.append(final.weights)
        hashes.append(final.hash.hex())
        first_seen = [min(known[r] for known in watcher.seen) for r in range(workload.rounds + 1)]
        return {
            "round_times_s": gaps(open_at),
            # client phase: round open everywhere -> every client's update accepted (HTTP 202)
            "clients_phase_s": [s - o for s, o in zip(submitted_at, open_at, strict=False)],
            "first_validator_lead_s": [e - f for e, f in zip(open_at, first_seen, strict=True)],
            "accuracy_by_round": [self.prepared.accuracy(w) for w in models],
            "model_hashes": hashes,
        }

    async def _client_round(
        self,
        session: aiohttp.ClientSession,
        url: str,
        key: PrivateKey,
        client: int,
        round_number: int,
        chain_id: str,
        params: Params,
    ) -> RemoteModel:
        model = await fetch(session, url, chain_id)
        if model.round != round_number:
            raise BenchError(f"client {client}: round {model.round} open, expected {round_number}")
        tx = signed_update(self.prepared, key, chain_id, client, model, params)
        async with session.post(
            url + "/txs", data=tx, headers={"Content-Type": "application/octet-stream"}
        ) as resp:
            body = await resp.read()
            if resp.status != 202:
                raise BenchError(
                    f"client {client} round {round_number}: HTTP {resp.status}: {body[:300]!r}"
                )
        return model
