"""Prometheus metrics: a tiny registry of gauges, counters and histograms, and its text format.

No client library: the exposition format is a few lines of text, and owning it keeps every
metric's name, help and bounds in one reviewable place (`NodeMetrics`).
"""

from dataclasses import dataclass, field

from aiohttp import web


@dataclass(slots=True)
class Gauge:
    name: str
    help: str
    value: float = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def render(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help}",
            f"# TYPE {self.name} gauge",
            f"{self.name} {_num(self.value)}",
        ]


@dataclass(slots=True)
class Counter:
    name: str
    help: str
    value: float = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def render(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help}",
            f"# TYPE {self.name} counter",
            f"{self.name} {_num(self.value)}",
        ]


@dataclass(slots=True)
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for bound, n in zip(self.buckets, self.counts, strict=True):
            lines.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {n}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {_num(self.total)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


_INTERVAL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeMetrics:
    def __init__(self) -> None:
        self.height = Gauge("fedchain_height", "Height of the last committed block")
        self.round = Gauge("fedchain_consensus_round", "Consensus round at the current height")
        self.peers = Gauge("fedchain_peers", "Connected p2p peers")
        self.mempool_txs = Gauge("fedchain_mempool_txs", "Transactions in the mempool")
        self.mempool_bytes = Gauge("fedchain_mempool_bytes", "Bytes of transactions in the mempool")
        self.block_interval = Histogram(
            "fedchain_block_interval_seconds", "Time between committed blocks", _INTERVAL_BUCKETS
        )
        self.txs_committed = Counter("fedchain_txs_committed_total", "Committed transactions")
        self.txs_rejected = Counter(
            "fedchain_txs_rejected_total", "Transactions refused by check_tx"
        )
        self.fl_round = Gauge("fedchain_fl_round", "Current federated-learning round")
        self.syncing = Gauge("fedchain_syncing", "1 while block-syncing, 0 in consensus")
        self.peer_penalties = Counter(
            "fedchain_peer_penalties_total", "Peers penalized for invalid messages"
        )

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.height,
            self.round,
            self.peers,
            self.mempool_txs,
            self.mempool_bytes,
            self.block_interval,
            self.txs_committed,
            self.txs_rejected,
            self.fl_round,
            self.syncing,
            self.peer_penalties,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


def metrics_app(metrics: NodeMetrics) -> web.Application:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", handle)
    return app
