"""create_empty_blocks = false in the driver: after a block that changed nothing the next height
waits (BlockExecuted is held) until a tx, a peer's message of the next height, or the interval."""

from dataclasses import dataclass, field, replace

from consensus.driver.driver import Driver, DriverConfig
from consensus.engine import BlockExecuted, ChainState, Input
from consensus.types import NIL, PRECOMMIT, PREVOTE, Block
from tests.consensus.harness import CHAIN, KEYS, make_block, proposal, proposer, vote
from tests.consensus.test_driver_replay import Rig, _me_not_proposing

INTERVAL_MS = 5_000
COMMIT_MS = 100


@dataclass
class Timers:
    scheduled: list[tuple[int, Input]] = field(default_factory=list)

    def schedule(self, delay_ms: int, inp: Input) -> None:
        self.scheduled.append((delay_ms, inp))

    def fire(self, driver: Driver, delay_ms: int) -> None:
        due = [inp for d, inp in self.scheduled if d == delay_ms]
        self.scheduled = [(d, inp) for d, inp in self.scheduled if d != delay_ms]
        for inp in due:
            driver.feed(inp)


def held_driver(interval_ms: int = INTERVAL_MS) -> tuple[Driver, Timers, int]:
    me = _me_not_proposing()
    driver = Rig(me).start()
    timers = Timers()
    driver.ports = replace(driver.ports, timers=timers)
    driver.config = DriverConfig(
        commit_timeout_ms=COMMIT_MS,
        create_empty_blocks=False,
        create_empty_blocks_interval_ms=interval_ms,
    )
    return driver, timers, me


def decide(driver: Driver, me: int, block: Block, chain: ChainState = CHAIN) -> None:
    others = [k for i, k in enumerate(KEYS) if i != me]
    height = chain.height
    driver.receive(proposal(0, block, key=proposer(0, chain), height=height), None)
    for k in others[:2]:
        driver.receive(vote(k, PREVOTE, 0, block.id(), height=height), None)
    for k in others[:2]:
        driver.receive(vote(k, PRECOMMIT, 0, block.id(), height=height), None)


def executed(timers: Timers) -> list[tuple[int, Input]]:
    return [(d, inp) for d, inp in timers.scheduled if isinstance(inp, BlockExecuted)]


def test_an_empty_block_holds_the_next_height_until_a_tx_arrives() -> None:
    driver, timers, me = held_driver()
    decide(driver, me, make_block(proposer(0), txs=()))
    assert [d for d, _ in executed(timers)] == [INTERVAL_MS]  # no commit pause: a hold
    assert driver.height == 1
    driver.txs_available()
    timers.fire(driver, COMMIT_MS)
    assert driver.height == 2
    timers.fire(driver, INTERVAL_MS)  # the interval's copy arrives late and changes nothing
    assert driver.height == 2


def test_the_interval_ends_the_hold() -> None:
    driver, timers, me = held_driver()
    decide(driver, me, make_block(proposer(0), txs=()))
    timers.fire(driver, COMMIT_MS)
    assert driver.height == 1
    timers.fire(driver, INTERVAL_MS)
    assert driver.height == 2


def test_a_block_with_txs_is_followed_at_the_commit_pace() -> None:
    driver, timers, me = held_driver()
    decide(driver, me, make_block(proposer(0), txs=(b"k=v",)))
    assert [d for d, _ in executed(timers)] == [COMMIT_MS]


def test_a_tx_that_missed_the_block_cancels_the_hold() -> None:
    driver, timers, me = held_driver(interval_ms=0)
    driver.txs_available()  # admitted while height 1 was being decided, not in its block
    decide(driver, me, make_block(proposer(0), txs=()))
    assert [d for d, _ in executed(timers)] == [COMMIT_MS]


def test_a_tx_after_the_interval_ended_the_hold_cancels_the_next_one() -> None:
    driver, timers, me = held_driver()
    decide(driver, me, make_block(proposer(0), txs=()))
    timers.fire(driver, INTERVAL_MS)
    assert driver.height == 2
    driver.txs_available()  # arrives while height 2 is being decided, misses its block
    chain = driver.state.chain
    assert KEYS[me] is not proposer(0, chain)
    decide(driver, me, make_block(proposer(0, chain), txs=(), chain=chain), chain)
    assert driver.height == 2
    assert [d for d, _ in executed(timers)] == [COMMIT_MS]


def test_a_peer_at_the_next_height_ends_the_hold() -> None:
    driver, timers, me = held_driver(interval_ms=0)  # 0: only a tx would end it
    decide(driver, me, make_block(proposer(0), txs=()))
    assert executed(timers) == []
    assert driver.height == 1
    peer = KEYS[(me + 1) % len(KEYS)]
    driver.receive(vote(peer, PREVOTE, 0, NIL, height=2), None)
    assert driver.height == 2
