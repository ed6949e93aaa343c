"""A refused proposal's txs leave the app's memo unless this node's mempool holds them.

The FL app memoizes each authenticated tx (fl/authcache.py) until it is committed or let go;
the txs of a block the app refuses are never committed, so without the release a byzantine
proposer could fill the memo with distinct signed txs every round it proposes."""

from collections.abc import Sequence
from types import SimpleNamespace
from typing import cast

import pytest

from consensus.app import BlockInfo, CheckTxResult
from consensus.types import Block
from node.consensus_shell import NodeContext, _NodeApp
from node.mempool import Mempool


class RefusingApp:
    def __init__(self, valid: bool) -> None:
        self.valid = valid
        self.released: list[bytes] = []

    def process_proposal(self, txs: Sequence[bytes], block: BlockInfo) -> bool:
        return self.valid

    def release_tx(self, tx: bytes) -> None:
        self.released.append(tx)


@pytest.mark.parametrize("valid", [False, True])
def test_a_refused_blocks_foreign_txs_are_released(valid: bool) -> None:
    app = RefusingApp(valid)
    mempool = Mempool(
        lambda _tx: CheckTxResult(), txs_max=10, bytes_max=1 << 20, tx_bytes_max=1 << 16
    )
    mempool.add(b"held")
    node = cast(NodeContext, SimpleNamespace(app=app, mempool=mempool))
    block = cast(Block, SimpleNamespace(txs=(b"held", b"foreign-1", b"foreign-2")))
    assert _NodeApp(node).validate(block, cast(BlockInfo, None)) is valid
    assert app.released == ([] if valid else [b"foreign-1", b"foreign-2"])
