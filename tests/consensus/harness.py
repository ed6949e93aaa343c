"""Builders for engine tests: a 4-validator chain at height 1, signed messages from any of the
validators, and an engine under test ("me") that is not the round-0 proposer unless asked."""

from dataclasses import dataclass, field

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from consensus.engine import (
    BlockValidated,
    Broadcast,
    ChainState,
    Effect,
    Engine,
    EngineConfig,
    EngineState,
    Input,
    KeySigner,
    ProposalReceived,
    ScheduleTimeout,
    Start,
    ValidateBlock,
    VoteReceived,
)
from consensus.kvapp import KVApp
from consensus.types import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    Block,
    Header,
    Proposal,
    Vote,
    commit_hash,
    evidence_hash,
    proposal_sign_bytes,
    txs_hash,
    vote_sign_bytes,
)

CHAIN_ID = "test-chain"
KEYS = [PrivateKey.from_label(f"validator-{i}") for i in range(4)]
GENESIS = Genesis(CHAIN_ID, tuple(GenesisValidator(k.public_key, 10) for k in KEYS))


def genesis_chain() -> ChainState:
    app_hash, _ = KVApp().init_chain(GENESIS)
    return ChainState.from_genesis(GENESIS, app_hash)


CHAIN = genesis_chain()


def key_of(public_key: bytes) -> PrivateKey:
    return next(k for k in KEYS if k.public_key == public_key)


def proposer(round_: int, chain: ChainState = CHAIN) -> PrivateKey:
    return key_of(chain.validators.proposer(round_))


def non_proposers(round_: int) -> list[PrivateKey]:
    p = proposer(round_)
    return [k for k in KEYS if k is not p]


def make_block(
    proposer_key: PrivateKey, txs: tuple[bytes, ...] = (b"k=v",), chain: ChainState = CHAIN
) -> Block:
    header = Header(
        chain_id=chain.chain_id,
        height=chain.height,
        time_ms=chain.last_time_ms + 1_000,
        last_block_id=chain.last_block_id,
        last_commit_hash=commit_hash(chain.last_commit),
        data_hash=txs_hash(txs),
        evidence_hash=evidence_hash(()),
        validators_hash=chain.validators.hash(),
        next_validators_hash=chain.next_validators.hash(),
        app_hash=chain.app_hash,
        proposer=proposer_key.public_key,
    )
    return Block(header, txs, (), chain.last_commit)


def proposal(
    round_: int, block: Block, pol_round: int = -1, key: PrivateKey | None = None, height: int = 1
) -> Proposal:
    key = key or proposer(round_)
    sig = key.sign(proposal_sign_bytes(CHAIN_ID, height, round_, pol_round, block.id()))
    return Proposal(height, round_, pol_round, block, key.public_key, sig)


def vote(
    key: PrivateKey,
    vote_type: int,
    round_: int,
    block_id: bytes,
    height: int = 1,
    chain_id: str = CHAIN_ID,
) -> Vote:
    sig = key.sign(vote_sign_bytes(chain_id, vote_type, height, round_, block_id))
    return Vote(vote_type, height, round_, block_id, key.public_key, sig)


def prevote(key: PrivateKey, round_: int, block_id: bytes = NIL) -> Vote:
    return vote(key, PREVOTE, round_, block_id)


def precommit(key: PrivateKey, round_: int, block_id: bytes = NIL) -> Vote:
    return vote(key, PRECOMMIT, round_, block_id)


@dataclass
class Node:
    """The engine under test with its state and every effect it produced so far."""

    me: PrivateKey
    engine: Engine
    state: EngineState
    effects: list[Effect] = field(default_factory=list)
    app_valid: bool = True  # what the app's process_proposal answers

    def feed(self, *inputs: Input) -> list[Effect]:
        produced: list[Effect] = []
        pending = list(inputs)
        while pending:
            inp = pending.pop(0)
            self.state, out = self.engine.apply(self.state, inp)
            produced.extend(out)
            # Answer the app's validation at once, as a shell with a valid-everything app would.
            pending[:0] = [
                BlockValidated(e.height, e.block.id(), self.app_valid)
                for e in out
                if isinstance(e, ValidateBlock)
            ]
        self.effects.extend(produced)
        return produced

    def proposals(self, round_: int | None = None) -> list[Proposal]:
        return [
            e.message
            for e in self.effects
            if isinstance(e, Broadcast)
            and isinstance(e.message, Proposal)
            and (round_ is None or e.message.round == round_)
        ]

    def votes(self, vote_type: int, round_: int) -> list[bytes]:
        """Block ids this node voted for at (type, round)."""
        return [
            e.message.block_id
            for e in self.effects
            if isinstance(e, Broadcast)
            and isinstance(e.message, Vote)
            and e.message.type == vote_type
            and e.message.round == round_
        ]

    def timeouts(self, step: int, round_: int) -> list[ScheduleTimeout]:
        return [
            e
            for e in self.effects
            if isinstance(e, ScheduleTimeout) and e.step == step and e.round == round_
        ]

    def receive(self, *msgs: Proposal | Vote) -> list[Effect]:
        return self.feed(
            *(ProposalReceived(m) if isinstance(m, Proposal) else VoteReceived(m) for m in msgs)
        )


def started_node(me: PrivateKey | None = None, config: EngineConfig | None = None) -> Node:
    me = me or non_proposers(0)[0]
    node = Node(me, Engine(config or EngineConfig(), KeySigner(me)), EngineState.for_height(CHAIN))
    node.feed(Start())
    return node


def others(node: Node) -> list[PrivateKey]:
    return [k for k in KEYS if k is not node.me]
