"""JSON views of stored blocks and consensus state for the RPC server (read-only, no I/O)."""

from typing import Any

from consensus.app import Genesis
from consensus.engine import EngineState
from consensus.txid import tx_id
from consensus.types import decode_block, decode_commit
from node.records import decode_results
from node.store.sqlite import StoredBlock


def block_json(stored: StoredBlock) -> dict[str, Any]:
    block = decode_block(stored.data)
    commit = decode_commit(stored.commit_data)
    results = decode_results(stored.results)
    h = block.header
    return {
        "height": stored.height,
        "hash": stored.hash.hex(),
        "time_ms": h.time_ms,
        "proposer": h.proposer.hex(),
        "app_hash": h.app_hash.hex(),
        "result_app_hash": stored.app_hash.hex(),
        "last_block_hash": h.last_block_id.hex(),
        "data_hash": h.data_hash.hex(),
        "validators_hash": h.validators_hash.hex(),
        "txs": [tx_id(tx).hex() for tx in block.txs],
        "tx_results": [{"code": c, "reason": r} for c, r in results.tx_results],
        "evidence": len(block.evidence),
        "commit": {
            "round": commit.round,
            "signers": [s.validator.hex() for s in commit.signatures],
        },
    }


def validators_json(state: EngineState, genesis: Genesis) -> dict[str, Any]:
    chain = state.chain
    names = {v.public_key: v.name for v in genesis.validators}
    return {
        "height": chain.height,
        "total_power": chain.validators.total_power,
        "validators": [
            {
                "public_key": v.public_key.hex(),
                "power": v.power,
                "name": names.get(v.public_key, ""),
            }
            for v in chain.validators.validators
        ],
    }


def consensus_status(state: EngineState, public_key: bytes, fl_round: int) -> dict[str, Any]:
    chain = state.chain
    return {
        "consensus_height": chain.height,
        "round": state.round,
        "step": state.step,
        "is_validator": chain.validators.index(public_key) is not None,
        "voting_power": chain.validators.power_of(public_key),
        "validators": len(chain.validators),
        "fl_round": fl_round,
    }


def tx_in_block(stored: StoredBlock | None, index: int) -> bytes | None:
    if stored is None:
        return None
    txs = decode_block(stored.data).txs
    return txs[index] if 0 <= index < len(txs) else None
