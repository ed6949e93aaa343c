"""Three organisations build one genesis without sharing keys, then run the chain (loopback).

This is docs/operators.md, step by step, as separate `fedchain` processes: a coordinator
writes a draft, each organisation initialises its own home and signs its validator entry, the
coordinator bonds a client and funds an account and collects the entries, everyone validates the
same genesis hash, the three nodes commit the same blocks, and (bond admission, the default) the
bonded client's update is taken while a stranger's is refused.
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from consensus.crypto import PrivateKey
from fl.client.sdk import build_update, fetch_model, fetch_params, next_nonce
from node.genesis import genesis_hash, read_genesis_file
from node.keys import generate_key, write_key
from node.localnet import free_base_port, terminate_all
from node.rpc.client import RpcClient, RpcError
from node.rpc.transport import RpcTransport

# A safety net, not a speed claim: a dozen CLI processes (each a Python start-up, 10-15 s on a
# loaded 2-core machine) and then an idle production chain, whose empty blocks are 10 s apart.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
ORGS = ("hospital-a", "hospital-b", "lab-c")


def fedchain(*args: str | Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", *map(str, args)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"fedchain {args}: {done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def test_three_organisations_make_one_genesis_and_run_it(tmp_path: Path) -> None:
    base = free_base_port(len(ORGS))
    coordinator = tmp_path / "coordinator"
    coordinator.mkdir()
    draft = coordinator / "genesis.json"
    fedchain("genesis", "init", "--chain-id", "consortium-1", "--clients", "2", "--out", draft)

    gentxs: list[Path] = []
    for i, org in enumerate(ORGS):
        home = tmp_path / org  # on its own host: its keys never leave this directory
        fedchain(
            "init",
            "--home", home,
            "--moniker", org,
            "--p2p-laddr", f"127.0.0.1:{base + 10 * i}",
            "--rpc-laddr", f"127.0.0.1:{base + 10 * i + 1}",
            "--metrics-laddr", f"127.0.0.1:{base + 10 * i + 4}",
        )  # fmt: skip
        out = home / "gentx.json"
        fedchain(
            "genesis", "add-validator", "--home", home, "--genesis", draft,
            "--p2p-address", f"127.0.0.1:{base + 10 * i}", "--out", out,
        )  # fmt: skip
        gentxs.append(shutil.copy(out, coordinator / f"{org}.gentx.json"))

    client_key = tmp_path / "client_key.json"
    client = generate_key()
    write_key(client_key, client)
    account = generate_key().public_key.hex()
    added = fedchain(
        "genesis", "add-client", "--genesis", draft, "--key-file", client_key, "--bond", "500"
    )  # fmt: skip
    assert "has 5 votes under the robust rules (one per 100 bonded)" in added
    assert "at most 500 samples under fedavg" in added
    fedchain("genesis", "add-account", "--genesis", draft, "--key", account, "--balance", "7")
    collected = fedchain("genesis", "collect", "--genesis", draft, *gentxs)
    peers = re.findall(r"(/ip4/\S+/p2p/12D3KooW\w+)", collected)
    assert len(peers) == len(ORGS)

    # Everyone checks the same file and compares the hash out of band.
    printed = fedchain("genesis", "validate", draft)
    final = read_genesis_file(draft).genesis
    assert f"genesis hash {genesis_hash(final).hex()}" in printed
    assert [v.name for v in final.validators] == list(ORGS)
    body = json.loads(draft.read_text())
    accounts = {a["key"]: a for a in body["app_state"]["economics"]["accounts"]}
    assert accounts[account]["balance"] == 7
    assert body["app_state"]["params"]["updates_per_round"] == 2  # readable, not a hex blob

    procs = []
    for i, org in enumerate(ORGS):
        home = tmp_path / org
        others = ",".join(p for j, p in enumerate(peers) if j != i)
        fedchain(
            "init", "--home", home, "--moniker", org, "--force", "--genesis", draft,
            "--p2p-laddr", f"127.0.0.1:{base + 10 * i}",
            "--rpc-laddr", f"127.0.0.1:{base + 10 * i + 1}",
            "--metrics-laddr", f"127.0.0.1:{base + 10 * i + 4}",
            "--persistent-peers", others,
        )  # fmt: skip
        assert read_genesis_file(home / "genesis.json").genesis == final
        with (home / "node.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "node.cli", "start", "--home", str(home)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ),
                )
            )
    try:
        urls = [f"http://127.0.0.1:{base + 10 * i + 1}" for i in range(len(ORGS))]
        hashes = asyncio.run(_block_hashes(urls, height=3))
        assert len(set(hashes)) == 1, hashes
        # Bond admission by default: the bonded client's update is taken, a stranger's refused.
        assert submit_update(urls[0], client) == ""
        refused = submit_update(urls[1], generate_key())
        assert "bonded stake 0 is below the client minimum 100" in refused, refused
    finally:
        terminate_all(procs)
    assert all(p.returncode == 0 for p in procs)


def submit_update(url: str, key: PrivateKey) -> str:
    """Submit a small update signed by `key` for the open round: "" if taken, else the reason."""
    transport = RpcTransport(url)
    try:
        model = fetch_model(transport)
        tx = build_update(
            key,
            transport.chain_id(),
            next_nonce(transport, key),
            model,
            np.random.default_rng(0).normal(0.0, 0.01, model.weights.shape),
            100,
            fetch_params(transport),
        )
        result = transport.submit(tx)
    finally:
        transport.close()
    return "" if result.accepted else result.reason


async def _block_hashes(urls: list[str], height: int) -> list[str]:
    hashes = []
    for url in urls:
        async with RpcClient(url, timeout_ms=2_000) as client:
            for _ in range(600):
                try:
                    if int((await client.status())["height"]) >= height:
                        break
                except RpcError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{url} did not reach height {height}")
            hashes.append(str((await client.block(height))["hash"]))
    return hashes


def test_a_tampered_gentx_is_refused(tmp_path: Path) -> None:
    draft = tmp_path / "genesis.json"
    fedchain("genesis", "init", "--chain-id", "consortium-1", "--out", draft)
    home = tmp_path / "org"
    fedchain("init", "--home", home, "--moniker", "org")
    gentx = home / "gentx.json"
    fedchain(
        "genesis", "add-validator", "--home", home, "--genesis", draft,
        "--p2p-address", "127.0.0.1:26656", "--out", gentx,
    )  # fmt: skip
    body = json.loads(gentx.read_text())
    body["power"] = 1_000  # raised on the way to the coordinator
    gentx.write_text(json.dumps(body))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli",
            "genesis",
            "collect",
            "--genesis",
            str(draft),
            str(gentx),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "signature: not made by this validator key" in done.stderr
    assert "Traceback" not in done.stderr
    # A draft cannot start a node: it has no validators yet.
    start = subprocess.run(
        [sys.executable, "-m", "node.cli", "genesis", "validate", str(draft)],
        capture_output=True,
        text=True,
    )
    assert start.returncode == 1
    assert "validators: expected a non-empty list" in start.stderr
