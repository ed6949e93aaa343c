"""What a running node adds for its operators, started in one call from service.py: peer
exchange (node/pex.py), the signing watch (node/signing.py) and the scrape-time metrics
(peers by class, handshake refusals, address book, build info)."""

from collections import Counter
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

from consensus.app import Genesis
from consensus.crypto import PrivateKey
from consensus.engine import EngineState
from node.config import NodeConfig, P2PConfig
from node.home import Home
from node.metrics import NodeMetrics
from node.network import Network
from node.p2p.host import Host
from node.pex import PeerExchange, PexSettings, start_pex
from node.signing import SigningMonitor, watch_signing

ADDRBOOK_FILE = "addrbook.json"
PEER_CLASSES = ("validator", "persistent", "stranger")


class _Shell(Protocol):
    @property
    def state(self) -> EngineState: ...


class OpsNode(Protocol):
    """What of the node (node/service.py Node) this module reads."""

    cfg: NodeConfig
    genesis: Genesis
    home: Home
    metrics: NodeMetrics
    validator_key: PrivateKey

    @property
    def shell(self) -> _Shell: ...


@dataclass(frozen=True, slots=True)
class Ops:
    pex: PeerExchange | None
    signing: SigningMonitor


def pex_settings(p2p: P2PConfig) -> PexSettings:
    return PexSettings(
        interval_ms=p2p.pex_interval_ms, peers_max=p2p.peers_max, strict=p2p.addr_book_strict
    )


def build_version() -> str:
    try:
        return version("fedchain")
    except PackageNotFoundError:
        return "unknown"


def start_ops(node: OpsNode, host: Host, network: Network) -> Ops:
    gate = network.gate
    pex = None
    if node.cfg.p2p.pex and gate is not None:
        pex = start_pex(
            host,
            gate,
            node.genesis.chain_id,
            node.home.data_dir / ADDRBOOK_FILE,
            pex_settings(node.cfg.p2p),
        )
    signing = watch_signing(
        host,
        node.cfg,
        node.metrics,
        node.validator_key.public_key,
        lambda: node.shell.state,
        lambda: len(network.peers()),
    )
    metrics = node.metrics
    metrics.describe(
        build_version(),
        node.genesis.chain_id,
        ((v.public_key, v.name) for v in node.genesis.validators),
    )

    def collect() -> None:
        classes = Counter(host.peer_class(p).value for p in host.connected_peers())
        for name in (*PEER_CLASSES, *classes):
            metrics.peers_by_class.set(name, value=classes.get(name, 0))
        if gate is not None:
            metrics.peers_refused.value = gate.refused
        if pex is not None:
            metrics.addrbook_size.set(len(pex.book))

    metrics.collectors.append(collect)
    return Ops(pex, signing)
