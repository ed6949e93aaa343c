"""`fedchain testnet`: homes for N validators and M FL clients sharing one genesis.

Loopback layout (default): every process on 127.0.0.1, node i listening on
base_port + 10*i (p2p), +1 (RPC), +4 (metrics).  With `--docker`, node i is the host
`validator{i}` using the default ports (26656/26657/26660) and listening on 0.0.0.0; client j
talks to `validator{j mod N}`.  Client homes hold a key and `client.toml` (RPC URL, dataset
shard index, attack) for `fedchain client run`.
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from consensus.app import Genesis, GenesisValidator
from node.apps import TESTNET_ROUND_DEADLINE_MS, genesis_app_state
from node.config import (
    METRICS_PORT_DEFAULT,
    P2P_PORT_DEFAULT,
    RPC_PORT_DEFAULT,
    ConsensusConfig,
    MetricsConfig,
    NodeConfig,
    P2PConfig,
    RpcConfig,
    render_config,
)
from node.errors import ConfigError
from node.genesis import APPS, write_genesis
from node.home import Home
from node.keys import generate_key, write_key
from node.p2p.peer_id import PeerId

HELP = "generate keys, genesis and configs for a local (or --docker) testnet"

PORT_STRIDE = 10
TESTNET_COMMIT_TIMEOUT_MS = 200
TESTNET_EMPTY_BLOCKS_INTERVAL_MS = 10_000
RPC_OFFSET = 1
METRICS_OFFSET = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--validators", type=int, default=4, help="number of validators")
    parser.add_argument("--clients", type=int, default=8, help="number of FL clients")
    parser.add_argument("--attackers", type=int, default=0, help="how many clients attack")
    parser.add_argument("--attack", default="sign_flip", help="attack the attackers run")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--docker", action="store_true", help="address peers as validator{i}")
    parser.add_argument("--base-port", type=int, default=P2P_PORT_DEFAULT, help="first port")
    parser.add_argument("--chain-id", default="fedchain-testnet")
    parser.add_argument("--app", default="fl", choices=APPS)
    parser.add_argument("--propose-timeout-ms", type=int, default=1_000)
    # A testnet is for demos and tests: fast blocks (~5/s), and an empty block after every one
    # (heights keep moving, as the tests and the e2e runner expect).  Production nodes default
    # to ~1 s blocks and no empty blocks (config/node.toml).
    parser.add_argument("--commit-timeout-ms", type=int, default=TESTNET_COMMIT_TIMEOUT_MS)
    parser.add_argument(
        "--create-empty-blocks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="propose empty blocks at the commit pace (--no-create-empty-blocks: only when txs "
        "arrive or --empty-blocks-interval-ms passes)",
    )
    parser.add_argument(
        "--empty-blocks-interval-ms", type=int, default=TESTNET_EMPTY_BLOCKS_INTERVAL_MS
    )
    parser.add_argument(
        "--round-deadline-ms",
        type=int,
        default=TESTNET_ROUND_DEADLINE_MS,
        help="FL round deadline in chain time (ms)",
    )
    parser.add_argument(
        "--open-clients",
        action="store_true",
        help="no client bonds: any key may submit (no sybil resistance; for tests of floods)",
    )
    parser.add_argument(
        "--commit-blocks",
        type=int,
        default=0,
        help="commit-reveal FL rounds with a commit phase of at most this many blocks (0: off; "
        "40, about the round deadline at the testnet pace, leaves clients that are still "
        "starting time to commit)",
    )


def fast_timing(
    cfg: NodeConfig,
    commit_timeout_ms: int = TESTNET_COMMIT_TIMEOUT_MS,
    create_empty_blocks: bool = True,
    empty_blocks_interval_ms: int = TESTNET_EMPTY_BLOCKS_INTERVAL_MS,
) -> NodeConfig:
    """`cfg` paced like a testnet: ~5 blocks/s and an empty block after every one (heights keep
    moving, as tests, benchmarks and the e2e runner expect), and the per-block log line at info
    (they read it).  Production defaults are ~1 s blocks, no empty blocks, that line at debug."""
    return replace(
        cfg,
        consensus=replace(
            cfg.consensus,
            commit_timeout_ms=commit_timeout_ms,
            create_empty_blocks=create_empty_blocks,
            create_empty_blocks_interval_ms=empty_blocks_interval_ms,
        ),
        log=replace(cfg.log, blocks_level="info"),
    )


def node_ports(base_port: int, index: int) -> tuple[int, int, int]:
    p2p = base_port + PORT_STRIDE * index
    return p2p, p2p + RPC_OFFSET, p2p + METRICS_OFFSET


def run(args: argparse.Namespace) -> int:
    try:
        generate(args)
    except ConfigError as exc:
        print(f"fedchain testnet: {exc}", file=sys.stderr)
        return 1
    return 0


def generate(args: argparse.Namespace) -> None:
    n, m = args.validators, args.clients
    if getattr(args, "commit_blocks", 0) < 0:
        raise ConfigError("--commit-blocks must be >= 0")
    if n < 1 or m < 0 or not 0 <= args.attackers <= m:
        raise ConfigError("need --validators >= 1 and 0 <= --attackers <= --clients")
    if not args.docker and not 1024 <= args.base_port <= 65_535 - PORT_STRIDE * n:
        raise ConfigError("--base-port: leaves no room for the nodes' ports")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    node_keys = [generate_key() for _ in range(n)]
    validator_keys = [generate_key() for _ in range(n)]
    client_keys = [generate_key() for _ in range(m)]

    def address(i: int) -> tuple[str, int]:
        if args.docker:
            return f"validator{i}", P2P_PORT_DEFAULT
        return "127.0.0.1", node_ports(args.base_port, i)[0]

    def peer_addr(i: int) -> str:
        host, port = address(i)
        proto = "dns4" if args.docker else "ip4"
        return f"/{proto}/{host}/tcp/{port}/p2p/{PeerId.from_public_key(node_keys[i].public_key)}"

    genesis_validators = tuple(
        GenesisValidator(k.public_key, 10, f"validator{i}") for i, k in enumerate(validator_keys)
    )
    genesis = Genesis(
        chain_id=args.chain_id,
        validators=genesis_validators,
        # Bond mode: every generated client is bonded at genesis (node/apps.py CLIENT_BOND).
        app_state=genesis_app_state(
            args.app,
            m,
            round_deadline_ms=getattr(args, "round_deadline_ms", TESTNET_ROUND_DEADLINE_MS),
            client_keys=(
                None
                if getattr(args, "open_clients", False)
                else tuple(k.public_key for k in client_keys)
            ),
            validators=genesis_validators,
            # LocalNet builds its own argument namespace without this option.
            commit_blocks=getattr(args, "commit_blocks", 0),
        ),
        # Now: round 0's chain-time deadline counts from here (with 0 it would have passed
        # long before the first block, and round 0 would close at once with nothing).
        genesis_time_ms=time.time_ns() // 1_000_000,
    )
    rpc_urls = []
    for i in range(n):
        home = Home(out / f"node{i}")
        home.data_dir.mkdir(parents=True, exist_ok=True)
        if args.docker:
            p2p_port, rpc_port, metrics_port = (
                P2P_PORT_DEFAULT,
                RPC_PORT_DEFAULT,
                METRICS_PORT_DEFAULT,
            )
            listen = "0.0.0.0"
            rpc_urls.append(f"http://validator{i}:{rpc_port}")
        else:
            p2p_port, rpc_port, metrics_port = node_ports(args.base_port, i)
            listen = "127.0.0.1"
            rpc_urls.append(f"http://127.0.0.1:{rpc_port}")
        cfg = NodeConfig(
            moniker=f"validator{i}",
            p2p=P2PConfig(
                listen_host=listen,
                listen_port=p2p_port,
                persistent_peers=tuple(peer_addr(j) for j in range(n) if j != i),
            ),
            rpc=RpcConfig(listen_host=listen, listen_port=rpc_port),
            metrics=MetricsConfig(listen_host=listen, listen_port=metrics_port),
            consensus=ConsensusConfig(propose_timeout_ms=args.propose_timeout_ms),
        )
        cfg = fast_timing(
            cfg,
            args.commit_timeout_ms,
            getattr(args, "create_empty_blocks", True),
            getattr(args, "empty_blocks_interval_ms", TESTNET_EMPTY_BLOCKS_INTERVAL_MS),
        )
        home.config_file.write_text(render_config(cfg))
        write_key(home.node_key_file, node_keys[i])
        write_key(home.validator_key_file, validator_keys[i])
        write_genesis(home.genesis_file, genesis, args.app)
    for j in range(m):
        client_dir = out / f"client{j}"
        client_dir.mkdir(parents=True, exist_ok=True)
        write_key(client_dir / "client_key.json", client_keys[j])
        attack = args.attack if j >= m - args.attackers else ""
        (client_dir / "client.toml").write_text(
            f'rpc = "{rpc_urls[j % n]}"\n'
            f"index = {j}\n"
            f"clients = {m}\n"
            f'attack = "{attack}"\n'
            'dataset = "digits"\n'
            f"seed = {j + 1}\n"
        )
    print(f"wrote {n} validator homes and {m} client homes to {out}")
    for i in range(n):
        print(f"  node{i}: rpc {rpc_urls[i]}")
