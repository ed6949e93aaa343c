"""Is this node's validator signing?  Said loudly when it is not (issue 15: a validator that
never joined missed 100 blocks and its own log said nothing).

Theory of operation
-------------------
Each committed block's last commit lists every validator of the previous height and whether
it signed (BlockInfo.last_commit).  `SigningCheck` (pure: fed blocks and clock ticks, returns
what to say) counts our consecutive misses while we are in the active set; at `window` misses
it reports `missed_commits`.  A validator that cannot reach 2/3 of the voting power sees no
commits at all, so a clock tick with no block for `stall_ms` reports `no_quorum`.  Each
condition is a WARNING `validator_not_signing` when it starts and again every `repeat_ms`
while it lasts; recovery is one INFO `validator_signing`.  /status shows `signing` and
`missed_blocks`; the metrics carry the same two values.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consensus.app import VoteInfo
from consensus.driver.ports import Decided
from consensus.engine import EngineState
from node.config import NodeConfig
from node.logging import log_event
from node.metrics import NodeMetrics
from node.p2p.host import Host

log = logging.getLogger(__name__)

WINDOW_BLOCKS = 5
TICK_S = 1.0
# A commit needs a proposal, a prevote and a precommit step: with no block for this many
# rounds' worth of timeouts, the validators we reach hold no 2/3 of the power.
STALL_ROUNDS = 5
STALL_MS_MIN = 5_000
STALL_NEVER_MS = 2**62


@dataclass(frozen=True, slots=True)
class NotSigning:
    reason: str  # "missed_commits" or "no_quorum"
    detail: str


@dataclass(frozen=True, slots=True)
class SigningAgain:
    missed_blocks: int


Notice = NotSigning | SigningAgain


class SigningCheck:
    def __init__(self, public_key: bytes, window: int, stall_ms: int, repeat_ms: int) -> None:
        self._key = public_key
        self._window = window
        self._stall_ms = stall_ms
        self._repeat_ms = repeat_ms
        self.missed_blocks = 0
        self.active = False
        self._last_block_ms: int | None = None
        self._warned: str = ""
        self._warned_ms = 0

    @property
    def stalled_since_ms(self) -> int | None:
        return self._last_block_ms

    def signing(self, now_ms: int) -> bool:
        return self.active and self.missed_blocks < self._window and not self._stalled(now_ms)

    def _stalled(self, now_ms: int) -> bool:
        return self._last_block_ms is not None and now_ms - self._last_block_ms >= self._stall_ms

    def started(self, now_ms: int, active: bool) -> None:
        self.active = active
        self._last_block_ms = now_ms

    def block(self, last_commit: tuple[VoteInfo, ...], active: bool, now_ms: int) -> list[Notice]:
        self._last_block_ms = now_ms
        self.active = active
        ours = next((v for v in last_commit if v.public_key == self._key), None)
        if ours is not None:
            self.missed_blocks = 0 if ours.signed else self.missed_blocks + 1
        elif not active:
            self.missed_blocks = 0
        return self._judge(now_ms, f"{self.missed_blocks} commits in a row without our signature")

    def tick(self, now_ms: int, peers: int) -> list[Notice]:
        if self._last_block_ms is None:
            return []
        idle_s = (now_ms - self._last_block_ms) // 1000
        return self._judge(
            now_ms, f"no block committed for {idle_s} s with {peers} chain peers connected"
        )

    def _judge(self, now_ms: int, detail: str) -> list[Notice]:
        reason = ""
        if self.active and self._stalled(now_ms):
            reason = "no_quorum"
        elif self.active and self.missed_blocks >= self._window:
            reason = "missed_commits"
        if not reason:
            if self._warned:
                self._warned = ""
                return [SigningAgain(self.missed_blocks)]
            return []
        if reason != self._warned or now_ms - self._warned_ms >= self._repeat_ms:
            self._warned, self._warned_ms = reason, now_ms
            return [NotSigning(reason, detail)]
        return []


class SigningMonitor:
    """The shell: feeds SigningCheck from commits and a clock, logs and exports its verdicts."""

    def __init__(
        self,
        public_key: bytes,
        metrics: NodeMetrics,
        active: Callable[[], bool],
        peers: Callable[[], int],
        stall_ms: int,
        clock_ms: Callable[[], int],
        window: int = WINDOW_BLOCKS,
    ) -> None:
        self._check = SigningCheck(public_key, window, stall_ms, repeat_ms=stall_ms)
        self._key = public_key
        self._metrics = metrics
        self._active = active
        self._peers = peers
        self._clock_ms = clock_ms
        self._check.started(clock_ms(), active())
        metrics.block_observers.append(self.on_block)

    def on_block(self, decided: Decided) -> None:
        active = decided.chain_after.validators.index(self._key) is not None
        self._say(self._check.block(decided.info.last_commit, active, self._clock_ms()))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._check.active = self._active()
            self._say(self._check.tick(self._clock_ms(), self._peers()))

    def status(self) -> dict[str, Any]:
        return {
            "signing": self._check.signing(self._clock_ms()),
            "missed_blocks": self._check.missed_blocks,
        }

    def _say(self, notices: list[Notice]) -> None:
        self._metrics.signing.set(1 if self._check.signing(self._clock_ms()) else 0)
        self._metrics.missed_blocks.set(self._check.missed_blocks)
        for notice in notices:
            match notice:
                case NotSigning(reason, detail):
                    log_event(
                        log,
                        "validator_not_signing",
                        logging.WARNING,
                        reason=reason,
                        detail=detail,
                        missed_blocks=self._check.missed_blocks,
                        peers=self._peers(),
                        validator=self._key.hex()[:16],
                    )
                case SigningAgain(missed):
                    log_event(log, "validator_signing", missed_blocks=missed)


def stall_ms(cfg: NodeConfig) -> int:
    c = cfg.consensus
    round_ms = c.propose_timeout_ms + c.prevote_timeout_ms + c.precommit_timeout_ms
    stall = max(STALL_MS_MIN, STALL_ROUNDS * (round_ms + c.commit_timeout_ms))
    if c.create_empty_blocks:
        return stall
    # An idle chain waits up to the interval between blocks (create_empty_blocks = false); with
    # no interval it may wait for ever, and no block for a while then says nothing.
    return (
        stall + c.create_empty_blocks_interval_ms
        if c.create_empty_blocks_interval_ms
        else STALL_NEVER_MS
    )


def watch_signing(
    host: Host,
    cfg: NodeConfig,
    metrics: NodeMetrics,
    public_key: bytes,
    state: Callable[[], EngineState],
    peers: Callable[[], int],
) -> SigningMonitor:
    """The started monitor of a node (its clock task runs in the host's task group)."""
    monitor = SigningMonitor(
        public_key,
        metrics,
        lambda: state().chain.validators.index(public_key) is not None,
        peers,
        stall_ms(cfg),
        lambda: int(time.monotonic() * 1000),
    )
    host.spawn(monitor.run(), "signing-monitor")
    return monitor
