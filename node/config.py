"""Node configuration: frozen dataclasses loaded from one TOML file, validated in one place.

`load_config(path)` is the only reader; everything downstream receives the typed values. Unknown
keys, wrong types and out-of-range values are refused with a ConfigError naming the field
(`rpc.listen_port: expected an integer in [0, 65535]`), because a typo silently ignored is a
node silently misconfigured.  `render_config(cfg)` writes the same format back, so `init` and
`testnet` produce files that round-trip.
"""

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from node.errors import ConfigError
from node.p2p.errors import InvariantError, P2PError
from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.peer_id import PeerId

KIB = 1024
MIB = 1024 * KIB

P2P_PORT_DEFAULT = 26656
RPC_PORT_DEFAULT = 26657
METRICS_PORT_DEFAULT = 26660


_GOSSIP = GossipsubConfig()


@dataclass(frozen=True, slots=True)
class GossipsubSettings:
    """[p2p.gossipsub]: the tx topic's mesh and the limits on what one peer can make this node
    hold or do.  Each is the GossipsubConfig field of the same name (node/p2p/gossipsub/
    config.py explains it; its defaults are these defaults); the rest keep the library's."""

    # The node's heartbeat (the library's default is 1000 ms).
    heartbeat_interval_ms: int = 700
    d: int = _GOSSIP.d
    d_lo: int = _GOSSIP.d_lo
    d_hi: int = _GOSSIP.d_hi
    d_score: int = _GOSSIP.d_score
    d_lazy: int = _GOSSIP.d_lazy
    d_out: int = _GOSSIP.d_out
    rpc_bytes_max: int = _GOSSIP.rpc_bytes_max
    rpc_send_bytes_max: int = _GOSSIP.rpc_send_bytes_max
    peer_queue_bytes_max: int = _GOSSIP.peer_queue_bytes_max
    publish_backlog_bytes_max: int = _GOSSIP.publish_backlog_bytes_max
    peer_messages_per_s_max: int = _GOSSIP.peer_messages_per_s_max
    peer_messages_burst: int = _GOSSIP.peer_messages_burst
    flood_drops_per_heartbeat_max: int = _GOSSIP.flood_drops_per_heartbeat_max
    seen_entries_max: int = _GOSSIP.seen_entries_max
    max_ihave_length: int = _GOSSIP.max_ihave_length
    max_ihave_messages: int = _GOSSIP.max_ihave_messages
    slow_peer_stall_heartbeats: int = _GOSSIP.slow_peer_stall_heartbeats
    stream_reopens_max: int = _GOSSIP.stream_reopens_max
    graylist_ban_ms: int = _GOSSIP.graylist_ban_ms

    def router_config(self) -> GossipsubConfig:
        """The router's config: these settings over the library's defaults."""
        return dataclasses.replace(
            _GOSSIP, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        )


@dataclass(frozen=True, slots=True)
class P2PConfig:
    listen_host: str = "0.0.0.0"
    listen_port: int = P2P_PORT_DEFAULT
    # Multiaddrs `/ip4/H/tcp/P/p2p/12D3KooW...` or `/dns4/NAME/tcp/P/p2p/...`, redialed forever.
    persistent_peers: tuple[str, ...] = ()
    peers_max: int = 50
    # Connection management (node/p2p/connmgr.py).  peers_max counts strangers only: validators
    # and persistent peers have reserved slots and are never evicted.  validator_peer_ids are
    # the node ids (12D3KooW...) of validators that are not persistent peers (CometBFT's
    # unconditional_peer_ids): protected the same way, but not dialled.
    validator_peer_ids: tuple[str, ...] = ()
    # Inbound connections still in their handshake; a handshake's deadline.
    pending_peers_max: int = 32
    handshake_timeout_ms: int = 10_000
    # Inbound strangers per source IP and per /24 (IPv6 /48) subnet.  A loopback testnet's
    # validators are protected, so these leave room for its full nodes and tools.
    peers_per_ip_max: int = 8
    peers_per_subnet_max: int = 16
    dial_backoff_max_ms: int = 5_000
    # Transactions up to this size travel through gossipsub; larger ones are pushed by the node
    # that got them from the client to its direct peers and announced by hash beyond them, so
    # bulk bytes cross each link about once (node/txgossip.py).
    push_tx_bytes_max: int = 64 * KIB
    request_bytes_max: int = 64 * MIB
    request_timeout_ms: int = 10_000
    # Memory budget for what peers can make this node hold (node/p2p/budget.py): yamux credit
    # granted plus received bytes not yet read.  All peers; strangers together (the rest is
    # reserved for validators and persistent peers); one connection of each class.
    memory_bytes_max: int = 1024 * MIB
    strangers_memory_bytes_max: int = 256 * MIB
    protected_connection_memory_bytes_max: int = 160 * MIB
    stranger_connection_memory_bytes_max: int = 40 * MIB
    # Pushed messages (node/network.py): the largest a stranger may send (validators and
    # persistent peers: request_bytes_max), and how long a message may take to arrive in full.
    # A full node pushes txs up to mempool.tx_bytes_max to the validators, who see it as a
    # stranger, so this must hold one (checked); memory is bounded by the budget above anyway.
    stranger_message_bytes_max: int = 17 * MIB
    message_timeout_ms: int = 20_000
    # Peer exchange (node/pex.py): ask admitted peers for the peers they know and dial them
    # (up to peers_max) every pex_interval_ms; the address book is HOME/data/addrbook.json.
    # addr_book_strict keeps and shares public addresses only (off for loopback testnets;
    # off, a loopback or private address is still only given to peers that can use it).
    pex: bool = True
    pex_interval_ms: int = 10_000
    addr_book_strict: bool = False
    gossipsub: GossipsubSettings = field(default_factory=GossipsubSettings)


@dataclass(frozen=True, slots=True)
class RpcConfig:
    enabled: bool = True
    listen_host: str = "127.0.0.1"
    listen_port: int = RPC_PORT_DEFAULT
    body_bytes_max: int = 32 * MIB
    ws_clients_max: int = 64
    ws_queue_events_max: int = 1_000
    # Request bodies being received at once, all connections together: an upload past this
    # waits for room (up to body_timeout_ms), so N stalled uploads can never hold N x 32 MiB.
    bodies_in_flight_bytes_max: int = 128 * MIB
    connections_max: int = 256
    connections_per_ip_max: int = 128
    # A request's header must arrive within header_timeout_ms of the connection's first byte
    # (or of the previous answer); its body within body_timeout_ms (slowloris).
    header_timeout_ms: int = 10_000
    body_timeout_ms: int = 60_000
    keepalive_timeout_ms: int = 15_000
    # WebSockets per client address; a client that sends nothing (no pong either) for
    # ws_idle_timeout_ms is closed.  When all ws_clients_max slots are taken, the oldest
    # connection of the address holding the most is closed to make room for a newcomer.
    ws_clients_per_ip_max: int = 8
    ws_idle_timeout_ms: int = 120_000


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    listen_host: str = "127.0.0.1"
    listen_port: int = METRICS_PORT_DEFAULT


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    propose_timeout_ms: int = 1_000
    propose_timeout_delta_ms: int = 500
    prevote_timeout_ms: int = 500
    prevote_timeout_delta_ms: int = 250
    precommit_timeout_ms: int = 500
    precommit_timeout_delta_ms: int = 250
    # Pause after a commit before the next height starts, to collect straggling precommits;
    # it sets the pace (CometBFT's timeout_commit: about one block a second).  Testnets and the
    # demo write 200 (`fedchain testnet --commit-timeout-ms`).
    commit_timeout_ms: int = 1_000
    # false: after a block that changed nothing (no txs, evidence or app events) the next one
    # waits until a tx arrives or create_empty_blocks_interval_ms passes (0: until a tx), so an
    # idle chain is quiet; chain-time deadlines (FL rounds, votes) fire at the interval's pace.
    create_empty_blocks: bool = False
    create_empty_blocks_interval_ms: int = 10_000
    block_txs_max: int = 10_000
    # What the validators can pull and check within about one propose timeout: with 64 MiB a
    # block of 334 FL updates needed 4-5 rounds (reassembly outlasted the timeout, everyone
    # prevoted nil); 16 MiB blocks decide in round 0 (docs/benchmarks.md, FL at scale).
    block_bytes_max: int = 16 * MIB
    # Proposer-based timestamps (consensus/engine/engine.py): honest clocks differ by at most
    # the precision, and a proposal reaches every validator within the message delay (relaxed
    # by 10% per round).  A proposal outside that window gets a nil prevote.
    timestamp_precision_ms: int = 500
    message_delay_ms: int = 2_000
    # Per-peer budgets for consensus messages (node/msgbudget.py): a peer may send this many
    # times the most a correct peer sends in a second (sized from n and the round), and is
    # banned at the this-many-th clearly abusive message (over budget, or a round or height no
    # correct peer reaches).
    peer_budget_margin: int = 2
    peer_abusive_messages_max: int = 10


@dataclass(frozen=True, slots=True)
class MempoolConfig:
    txs_max: int = 20_000
    bytes_max: int = 512 * MIB
    tx_bytes_max: int = 16 * MIB
    # Recently committed tx hashes, so a replay is refused before check_tx and not pulled
    # again (the app's nonces refuse it anyway).  CometBFT's cache_size is 10,000 too; 100,000
    # took ~16 MiB and 75 minutes of the soak's traffic to fill, which read as RSS growth.
    cache_hashes_max: int = 10_000
    recheck: bool = True
    # Budgets per sender (node/mempool.py): count and bytes of its pending txs.
    sender_txs_max: int = 16
    sender_bytes_max: int = 64 * MIB
    # A tx at most this many nonces past its sender's next committed nonce is held; one that
    # cannot run yet (missing nonces) ranks below every executable tx and is evicted first.
    nonce_gap_max: int = 8
    ttl_ms: int = 600_000
    ttl_heights: int = 3_000
    gapped_ttl_ms: int = 15_000
    # Pending txs are rechecked after every block with txs, and at least this often otherwise.
    recheck_interval_ms: int = 5_000


@dataclass(frozen=True, slots=True)
class SyncConfig:
    # A node this many heights behind its best peer block-syncs instead of running consensus.
    lag_heights_min: int = 2
    batch_blocks_max: int = 64
    status_interval_ms: int = 500


@dataclass(frozen=True, slots=True)
class StorageConfig:
    # fsync the block store on every commit (SQLite synchronous=FULL); off only for benchmarks
    # that measure something else.  The consensus WAL and LastSigned are always fsynced.
    fsync: bool = True
    app_snapshot_interval_heights: int = 100
    # Read one stored block body back (sha256) every this often, oldest first and round again,
    # so damage in a block nobody asks for is found and fetched again from peers; 0: off.
    scrub_interval_ms: int = 2_000


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    # Hand free heap pages back to the OS this often (node/allocator.py; a few ms of a worker
    # thread); 0: only after large frees.  Without it RSS keeps the high-water mark of every
    # burst the node has absorbed.
    trim_interval_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    # "auto": JSON lines when stdout is not a terminal, readable text when it is.
    format: str = "auto"
    # Level of the one line per committed block (`block_committed`): debug, so a node logs
    # what happens, not that time passes.  Testnets write "info" (their tools read the lines).
    blocks_level: str = "debug"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    moniker: str = "node"
    p2p: P2PConfig = field(default_factory=P2PConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    mempool: MempoolConfig = field(default_factory=MempoolConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    log: LogConfig = field(default_factory=LogConfig)


_LEVELS = ("debug", "info", "warning", "error")
_FORMATS = ("auto", "json", "text")
_PORT_FIELDS = ("listen_port",)

T = TypeVar("T")


def load_config(path: Path) -> NodeConfig:
    """Read and validate `path`; every problem is a ConfigError naming file and field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (run `fedchain init`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_dict(raw: dict[str, Any]) -> NodeConfig:
    cfg = _build(NodeConfig, raw, "")
    _validate(cfg)
    return cfg


def _build(cls: type[T], raw: Any, prefix: str) -> T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown setting")
    kwargs: dict[str, Any] = {}
    for name in sorted(names):
        if name not in raw:
            continue
        kwargs[name] = _convert(hints[name], raw[name], f"{prefix}{name}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where + ".")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        return value
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if isinstance(hint, types.UnionType):  # pragma: no cover - no optional settings yet
        raise ConfigError(f"{where}: unsupported setting type")
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")


def _validate(cfg: NodeConfig) -> None:
    def positive(where: str, value: int) -> None:
        if value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value}")

    def non_negative(where: str, value: int) -> None:
        if value < 0:
            raise ConfigError(f"{where}: must not be negative, got {value}")

    def port(where: str, value: int) -> None:
        if not 0 <= value <= 65_535:
            raise ConfigError(f"{where}: expected a port in [0, 65535], got {value}")

    if not cfg.moniker or len(cfg.moniker) > 64:
        raise ConfigError("moniker: expected 1 to 64 characters")
    port("p2p.listen_port", cfg.p2p.listen_port)
    port("rpc.listen_port", cfg.rpc.listen_port)
    port("metrics.listen_port", cfg.metrics.listen_port)
    for i, addr in enumerate(cfg.p2p.persistent_peers):
        if "/p2p/" not in addr or not addr.startswith(("/ip4/", "/ip6/", "/dns4/", "/dns/")):
            raise ConfigError(
                f"p2p.persistent_peers[{i}]: expected a multiaddr like "
                f"/ip4/127.0.0.1/tcp/26656/p2p/12D3KooW..., got {addr[:80]!r}"
            )
    for i, peer_id in enumerate(cfg.p2p.validator_peer_ids):
        if not _is_peer_id(peer_id):
            raise ConfigError(
                f"p2p.validator_peer_ids[{i}]: expected a peer id like 12D3KooW..., "
                f"got {peer_id[:80]!r}"
            )
    if cfg.p2p.peers_per_ip_max > cfg.p2p.peers_per_subnet_max:
        raise ConfigError("p2p.peers_per_ip_max: must not exceed p2p.peers_per_subnet_max")
    p2p = cfg.p2p
    if not (
        p2p.stranger_connection_memory_bytes_max
        <= p2p.strangers_memory_bytes_max
        <= p2p.memory_bytes_max
    ):
        raise ConfigError(
            "p2p.strangers_memory_bytes_max: must lie between "
            "p2p.stranger_connection_memory_bytes_max and p2p.memory_bytes_max"
        )
    if p2p.protected_connection_memory_bytes_max > p2p.memory_bytes_max:
        raise ConfigError(
            "p2p.protected_connection_memory_bytes_max: must not exceed p2p.memory_bytes_max"
        )
    if p2p.stranger_message_bytes_max < cfg.mempool.tx_bytes_max + 64 * KIB:
        raise ConfigError(
            "p2p.stranger_message_bytes_max: must hold mempool.tx_bytes_max plus 64 KiB of "
            "framing (full nodes push txs to validators, to whom they are strangers)"
        )
    for section in (cfg.p2p, cfg.rpc, cfg.mempool, cfg.sync):
        name = type(section).__name__.removesuffix("Config").lower()
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and f.name.endswith(("_max", "_ms", "_min"))
            ):
                positive(f"{name}.{f.name}", value)
    for f in dataclasses.fields(cfg.consensus):
        non_negative(f"consensus.{f.name}", getattr(cfg.consensus, f.name))
    positive("consensus.block_txs_max", cfg.consensus.block_txs_max)
    positive("consensus.block_bytes_max", cfg.consensus.block_bytes_max)
    positive("consensus.message_delay_ms", cfg.consensus.message_delay_ms)
    positive("consensus.peer_budget_margin", cfg.consensus.peer_budget_margin)
    positive("consensus.peer_abusive_messages_max", cfg.consensus.peer_abusive_messages_max)
    positive("storage.app_snapshot_interval_heights", cfg.storage.app_snapshot_interval_heights)
    non_negative("storage.scrub_interval_ms", cfg.storage.scrub_interval_ms)
    non_negative("memory.trim_interval_ms", cfg.memory.trim_interval_ms)
    positive("mempool.ttl_heights", cfg.mempool.ttl_heights)
    if cfg.rpc.body_bytes_max > cfg.rpc.bodies_in_flight_bytes_max:
        raise ConfigError("rpc.body_bytes_max: must not exceed rpc.bodies_in_flight_bytes_max")
    if cfg.rpc.ws_clients_per_ip_max > cfg.rpc.ws_clients_max:
        raise ConfigError("rpc.ws_clients_per_ip_max: must not exceed rpc.ws_clients_max")
    if cfg.mempool.tx_bytes_max > cfg.mempool.bytes_max:
        raise ConfigError("mempool.tx_bytes_max: must not exceed mempool.bytes_max")
    if cfg.mempool.tx_bytes_max > cfg.consensus.block_bytes_max:
        raise ConfigError("mempool.tx_bytes_max: must not exceed consensus.block_bytes_max")
    _validate_gossipsub(cfg.p2p.gossipsub, "p2p.gossipsub.")
    if cfg.log.level not in _LEVELS:
        raise ConfigError(f"log.level: expected one of {', '.join(_LEVELS)}")
    if cfg.log.blocks_level not in _LEVELS:
        raise ConfigError(f"log.blocks_level: expected one of {', '.join(_LEVELS)}")
    if cfg.log.format not in _FORMATS:
        raise ConfigError(f"log.format: expected one of {', '.join(_FORMATS)}")


def _validate_gossipsub(g: GossipsubSettings, where: str) -> None:
    for f in dataclasses.fields(g):
        value = getattr(g, f.name)
        if f.name in ("d_score", "d_out", "stream_reopens_max"):
            if value < 0:
                raise ConfigError(f"{where}{f.name}: must not be negative, got {value}")
        elif value <= 0:
            raise ConfigError(f"{where}{f.name}: must be positive, got {value}")
    if not g.d_lo <= g.d <= g.d_hi:
        raise ConfigError(f"{where}d: must lie between d_lo ({g.d_lo}) and d_hi ({g.d_hi})")
    if g.d_score > g.d:
        raise ConfigError(f"{where}d_score: must not exceed d ({g.d})")
    if g.d_out >= g.d_lo or g.d_out > g.d // 2:
        raise ConfigError(f"{where}d_out: must be below d_lo and at most d/2")
    if g.rpc_send_bytes_max > g.rpc_bytes_max:
        raise ConfigError(f"{where}rpc_send_bytes_max: must not exceed {where}rpc_bytes_max")
    if g.publish_backlog_bytes_max <= g.peer_queue_bytes_max:
        # Otherwise one peer's full queue alone would hold every publish.
        raise ConfigError(
            f"{where}publish_backlog_bytes_max: must exceed {where}peer_queue_bytes_max"
        )
    try:
        g.router_config()
    except InvariantError as exc:  # a rule of the library's not checked above
        raise ConfigError(f"{where.rstrip('.')}: {exc}") from None


def _is_peer_id(text: str) -> bool:
    try:
        PeerId.from_base58(text)
    except (P2PError, ValueError):
        return False
    return True


def render_config(cfg: NodeConfig) -> str:
    """TOML text for `cfg`: top-level keys first, then one table per section, each followed
    by its sub-tables (`[p2p.gossipsub]`)."""
    lines = ["# fedchain node configuration (see config/node.toml for every setting explained)"]
    tables: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            tables.append((f.name, value))
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
    while tables:
        name, section = tables.pop(0)
        lines.append("")
        lines.append(f"[{name}]")
        subtables: list[tuple[str, Any]] = []
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if dataclasses.is_dataclass(value):
                subtables.append((f"{name}.{f.name}", value))
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        tables[:0] = subtables
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_str(v) for v in value) + "]"
    raise ConfigError(f"cannot render {type(value).__name__} as TOML")


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
