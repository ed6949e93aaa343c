"""Four engines and four KV apps pushed through a perfect in-memory link (h11-style): heights
commit, and validator-set changes ride along (returned at H, effective at H+2)."""

from collections import deque

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from consensus.engine import (
    BlockExecuted,
    BlockValidated,
    Broadcast,
    ChainState,
    Decide,
    Engine,
    EngineConfig,
    EngineState,
    Input,
    KeySigner,
    ProposalContent,
    ProposalReceived,
    RequestProposal,
    Start,
    ValidateBlock,
    VoteReceived,
)
from consensus.kvapp import KVApp
from consensus.types import Proposal, Vote

KEYS = [PrivateKey.from_label(f"cluster-{i}") for i in range(4)]
JOINER = PrivateKey.from_label("cluster-joiner")  # never runs: the others must carry it


def _run(
    heights: int, txs_at: dict[int, bytes]
) -> tuple[list[EngineState], list[KVApp], list[list[bytes]]]:
    genesis = Genesis("cluster", tuple(GenesisValidator(k.public_key, 10) for k in KEYS))
    engines, states, apps = [], [], []
    for key in KEYS:
        app = KVApp()
        app_hash, _ = app.init_chain(genesis)
        engines.append(Engine(EngineConfig(), KeySigner(key)))
        states.append(EngineState.for_height(ChainState.from_genesis(genesis, app_hash)))
        apps.append(app)
    decided: list[list[bytes]] = [[] for _ in KEYS]
    queue: deque[tuple[int, Input]] = deque((i, Start()) for i in range(4))
    while queue and min(len(d) for d in decided) < heights:
        i, inp = queue.popleft()
        states[i], effects = engines[i].apply(states[i], inp)
        for e in effects:
            match e:
                case Broadcast(message) if isinstance(message, Proposal):
                    queue.extend((j, ProposalReceived(message)) for j in range(4) if j != i)
                case Broadcast(message) if isinstance(message, Vote):
                    queue.extend((j, VoteReceived(message)) for j in range(4) if j != i)
                case RequestProposal(h, r, _):
                    txs = (f"h{h}=x".encode(), *([txs_at[h]] if h in txs_at else []))
                    queue.appendleft((i, ProposalContent(h, r, h * 1_000, txs)))
                case ValidateBlock(h, block, info):
                    ok = apps[i].process_proposal(block.txs, info)
                    queue.appendleft((i, BlockValidated(h, block.id(), ok)))
                case Decide(h, block, _, info):
                    result = apps[i].finalize_block(block.txs, info)
                    apps[i].commit()
                    decided[i].append(block.id())
                    queue.append(
                        (i, BlockExecuted(h, block.id(), result.app_hash, result.validator_updates))
                    )
                case _:
                    pass
    return states, apps, decided


def test_four_engines_agree_on_twenty_heights() -> None:
    states, apps, decided = _run(20, {})
    assert all(d[:20] == decided[0][:20] for d in decided)
    at_20 = {a.info().last_app_hash for a in apps if a.info().last_height == 20}
    assert len(at_20) == 1
    assert all(s.chain.height >= 20 for s in states)


def test_validator_joins_at_h_plus_2_and_leaves_again() -> None:
    join = b"val:" + JOINER.public_key.hex().encode() + b":10"
    leave = b"val:" + JOINER.public_key.hex().encode() + b":0"
    states, _, decided = _run(12, {3: join, 7: leave})
    assert all(d[:12] == decided[0][:12] for d in decided)
    chain = states[0].chain
    # Returned at 3 -> in the set of height 5; removed at 7 -> gone from height 9.
    assert chain.validators_at(4) is not None
    assert chain.validators_at(4).index(JOINER.public_key) is None  # type: ignore[union-attr]
    assert chain.validators_at(5).index(JOINER.public_key) is not None  # type: ignore[union-attr]
    assert chain.validators_at(8).index(JOINER.public_key) is not None  # type: ignore[union-attr]
    assert chain.validators_at(9).index(JOINER.public_key) is None  # type: ignore[union-attr]
    # With the joiner silent, 40 of 50 power still decided heights 5-8 (above 2/3).
