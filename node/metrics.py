"""Prometheus metrics: a tiny registry of gauges, counters and histograms, and its text format.

No client library: the exposition format is a few lines of text, and owning it keeps every
metric's name, help and bounds in one reviewable place (`NodeMetrics`).

What an operator alerts on (issue 15): missed signatures per validator (from each committed
block's last commit against the validator set), validator power and jailing, FL updates
accepted / flagged / rejected by reason and FL round duration, mempool size and refusals by
reason, peers by class, the process (RSS, CPU, open fds, start time) and build info.  Per-label
series are bounded (`LABELS_MAX` per family; the rest fold into "other") so a stream of odd
reasons or keys can never grow the registry without limit.
"""

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from consensus.app import Event
from consensus.codec import decode, expect_list, expect_str
from consensus.driver.ports import Decided
from consensus.errors import CodecError
from node.allocator import heap_stats, rss_bytes

LABELS_MAX = 256
REASON_CHARS_MAX = 48
FL_UPDATE_KINDS = ("submit_update", "commit_update", "reveal_update")


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
class Family:
    """A gauge or counter with labels; at most LABELS_MAX label sets (then "other")."""

    name: str
    help: str
    kind: str  # "gauge" or "counter"
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def _key(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if values in self.values or len(self.values) < LABELS_MAX:
            return values
        return tuple("other" for _ in values)

    def set(self, *values: str, value: float) -> None:
        self.values[self._key(values)] = value

    def inc(self, *values: str, amount: float = 1.0) -> None:
        key = self._key(values)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, *values: str) -> float:
        return self.values.get(values, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for key in sorted(self.values):
            pairs = ",".join(
                f'{label}="{_escape(value)}"' for label, value in zip(self.labels, key, strict=True)
            )
            lines.append(f"{self.name}{{{pairs}}} {_num(self.values[key])}")
        return lines


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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def reason_label(reason: str) -> str:
    """A refusal's reason as a bounded label: its words before the first number, colon or
    quote ("round 3 already holds 5" -> "round"; "bad signature" -> "bad_signature")."""
    head = re.split(r"[0-9:'\"(\[]", reason, maxsplit=1)[0].strip().lower()
    label = re.sub(r"[^a-z_]+", "_", head).strip("_")[:REASON_CHARS_MAX]
    return label or "unspecified"


def flag_label(flag: str) -> str:
    """A rule's flag as a bounded label: the rule and the words of its reason before the first
    number ("history_clip: clipped to 412 permille" -> "history_clip/clipped_to")."""
    rule, sep, why = flag.partition(": ")
    if not sep:
        return reason_label(flag)
    return f"{reason_label(rule)}/{reason_label(why)}"[:REASON_CHARS_MAX]


_INTERVAL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROUND_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


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
        # -- what an operator alerts on ---------------------------------------------------------
        self.missed_signatures = Family(
            "fedchain_validator_missed_signatures_total",
            "Commits a validator of the set did not sign (from each block's last commit)",
            "counter",
            ("validator", "name"),
        )
        self.validator_power = Family(
            "fedchain_validator_power",
            "Voting power of each validator (0: left the set or jailed)",
            "gauge",
            ("validator", "name"),
        )
        self.validator_jailed = Family(
            "fedchain_validator_jailed", "1 while the validator is jailed", "gauge", ("validator",)
        )
        self.signing = Gauge(
            "fedchain_validator_signing", "1 while this node's validator signs the commits"
        )
        self.missed_blocks = Gauge(
            "fedchain_validator_missed_blocks",
            "Consecutive recent commits without this node's validator",
        )
        self.fl_updates = Family(
            "fedchain_fl_updates_total",
            "FL updates by outcome (accepted, flagged, rejected) and rejection reason",
            "counter",
            ("outcome", "reason"),
        )
        self.fl_round_duration = Histogram(
            "fedchain_fl_round_duration_seconds",
            "Chain time from one FL round's close to the next",
            _ROUND_BUCKETS,
        )
        self.mempool_rejected = Family(
            "fedchain_mempool_rejected_total",
            "Transactions refused by the mempool, by reason",
            "counter",
            ("reason",),
        )
        self.peers_by_class = Family(
            "fedchain_peers_by_class",
            "Connected peers by class (validator, persistent, stranger)",
            "gauge",
            ("class",),
        )
        self.peers_refused = Counter(
            "fedchain_peers_refused_total",
            "Peers refused by the chain handshake (other chain id, genesis or version)",
        )
        self.addrbook_size = Gauge("fedchain_addrbook_peers", "Peers in the address book")
        self.build_info = Family(
            "fedchain_build_info",
            "Always 1; labels name the build",
            "gauge",
            ("version", "chain_id"),
        )
        self._names: dict[bytes, str] = {}
        self._last_round_close_ms = 0
        self._started_s = _process_start_s()
        # Called with each committed height after the metrics took it (node/signing.py).
        self.block_observers: list[Callable[[Decided], None]] = []
        # Called before each scrape, to refresh gauges that are cheaper read than pushed.
        self.collectors: list[Callable[[], None]] = []

    def describe(self, version: str, chain_id: str, names: Iterable[tuple[bytes, str]]) -> None:
        self.build_info.set(version, chain_id, value=1)
        self._names.update(names)

    # -- hooks ----------------------------------------------------------------------------------
    def observe_block(self, decided: Decided) -> None:
        """One committed height: signatures, validator set, app events, rejected FL updates."""
        for vote in decided.info.last_commit:
            key, name = vote.public_key.hex()[:16], self._names.get(vote.public_key, "")
            self.missed_signatures.inc(key, name, amount=0 if vote.signed else 1)
        current = {v.public_key: v.power for v in decided.chain_after.validators.validators}
        for pk in {*current, *self._names}:
            self.validator_power.set(
                pk.hex()[:16], self._names.get(pk, ""), value=current.get(pk, 0)
            )
        result = decided.result
        events = [*result.events, *(e for r in result.tx_results for e in r.events)]
        for event in events:
            self._observe_event(event, decided.info.time_ms)
        for tx, r in zip(decided.block.txs, result.tx_results, strict=False):
            if not r.ok and tx_kind(tx) in FL_UPDATE_KINDS:
                self.fl_updates.inc("rejected", reason_label(r.reason))
        for observer in self.block_observers:
            observer(decided)

    def _observe_event(self, event: Event, time_ms: int) -> None:
        attrs = dict(event.attributes)
        match event.kind:
            case "fl_update_accepted":
                self.fl_updates.inc("accepted", "")
            case "fl_round_closed":
                reasons = attrs.get("flagged_reasons", "")
                for flag in reasons.split(" | ") if reasons else ():
                    self.fl_updates.inc("flagged", flag_label(flag))
                if self._last_round_close_ms:
                    self.fl_round_duration.observe(
                        max(0, time_ms - self._last_round_close_ms) / 1000
                    )
                self._last_round_close_ms = time_ms
            case "validator_slashed" if "jailed_until" in attrs or "tombstoned" in attrs:
                self.validator_jailed.set(attrs.get("validator", "")[:16], value=1)
            case "validator_jailed":
                self.validator_jailed.set(attrs.get("validator", "")[:16], value=1)
            case "validator_unjailed":
                self.validator_jailed.set(attrs.get("validator", "")[:16], value=0)
            case _:
                pass

    def mempool_refused(self, code: str, reason: str) -> None:
        """A client's tx refused: the mempool's code ("full", "duplicate", ...), or for an
        app refusal "check_tx_" and the app's reason."""
        if code == "check_tx":
            self.txs_rejected.inc()
            self.mempool_rejected.inc(f"check_tx_{reason_label(reason)}"[:REASON_CHARS_MAX])
        else:
            self.mempool_rejected.inc(reason_label(code))

    # -- exposition -----------------------------------------------------------------------------
    def render(self) -> str:
        for collect in self.collectors:
            collect()
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
            self.missed_signatures,
            self.validator_power,
            self.validator_jailed,
            self.signing,
            self.missed_blocks,
            self.fl_updates,
            self.fl_round_duration,
            self.mempool_rejected,
            self.peers_by_class,
            self.peers_refused,
            self.addrbook_size,
            self.build_info,
        ):
            lines.extend(metric.render())
        lines.extend(self._process_lines())
        return "\n".join(lines) + "\n"

    def _process_lines(self) -> list[str]:
        cpu = os.times()
        values: list[tuple[str, str, str, float]] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time",
                cpu.user + cpu.system,
            ),
            ("process_resident_memory_bytes", "gauge", "Resident set size", rss_bytes()),
            ("process_open_fds", "gauge", "Open file descriptors", _open_fds()),
            ("process_start_time_seconds", "gauge", "Start time, Unix seconds", self._started_s),
        ]
        heap = heap_stats()
        if heap is not None:  # glibc: tells a leak (in use grows) from retained free memory
            values += [
                ("fedchain_heap_in_use_bytes", "gauge", "C heap bytes in use", heap.in_use_bytes),
                (
                    "fedchain_heap_free_bytes",
                    "gauge",
                    "Free C heap bytes not yet returned to the OS",
                    heap.free_bytes,
                ),
                (
                    "fedchain_python_allocated_blocks",
                    "gauge",
                    "Objects Python's allocator has handed out (sys.getallocatedblocks)",
                    heap.python_blocks,
                ),
            ]
        lines: list[str] = []
        for name, kind, text, value in values:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {_num(value)}"]
        return lines


def tx_kind(tx: bytes) -> str:
    """The kind of an FL-app tx (encode([kind, sender, nonce, body, sig])), or "" if not one."""
    try:
        value = decode(tx)
        return expect_str(expect_list(value, 5, "tx")[0], "tx kind", 32)
    except CodecError:
        return ""


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _process_start_s() -> float:
    """From /proc (boot time + start ticks), else now: the metrics are built at start-up."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def metrics_app(metrics: NodeMetrics) -> web.Application:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", handle)
    return app
