"""`fedchain committee run`: a validator's off-chain evaluation of FL updates (Yuma-style).

While the chain's `committee_blocks` > 0, every closed FL round waits that many blocks for
validators' scores (fl/economics/committee.py).  This process, run next to a validator, polls
the node's `econ/unsettled` query; for each waiting round it has not scored it fetches the
round's update transactions (hashes from `econ/unsettled`, bytes from `GET /txs/{hash}
?include=bytes`) and the round's base model (the kept `model/<v>` whose hash the updates name),
scores every update on its own held-out data, and sends one signed `eval_scores` transaction.

Score (fl/client/committee.py, the same code `fedchain eval --committee` measures): the
held-out cross-entropy gain of a tenth of the update, mapped to [0, 1000] around 500 = no
change, for the testnet's model (softmax regression).  The held-out data is part `--part` of
`--parts` of the first half of the dataset's test split, so validators score on disjoint data.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import numpy.typing as npt

from consensus.codec import (
    DecodeLimits,
    Value,
    decode,
    expect_bytes,
    expect_int,
    expect_list,
    expect_seq,
)
from consensus.errors import CodecError
from fl.client.committee import score_tx
from fl.client.datasets import load
from fl.client.errors import TransportError
from fl.client.quantize import FloatArray, model_to_float
from fl.client.trainers import Trainer, make_trainer
from fl.fixed import model_from_bytes
from fl.model import parameter_count
from fl.txs import SubmitUpdate, decode_tx, sign_tx
from node.apps import FL_DATASET
from node.commands.args import RPC_DEFAULT, rpc_url
from node.errors import NodeError
from node.keys import read_key
from node.rpc.transport import RpcTransport

HELP = "evaluation committee: score FL updates on held-out data and send eval_scores"
MODEL_VERSIONS_SEARCHED = 8  # the node keeps this many model versions
MODEL_LIMITS = DecodeLimits(array_items_max=10_000_000)


class NotYetError(NodeError):
    """The node does not have (or has not indexed) something yet; try again later."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("run",))
    parser.add_argument("--key", type=Path, required=True, help="validator key file")
    parser.add_argument(
        "--rpc", type=rpc_url, default=RPC_DEFAULT, help="node RPC URL or host:port"
    )
    parser.add_argument("--part", type=int, default=0, help="which held-out part is ours")
    parser.add_argument("--parts", type=int, default=1, help="held-out parts (validators)")
    parser.add_argument("--rounds", type=int, default=0, help="stop after scoring this many")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--poll-s", type=float, default=0.5)


def run(args: argparse.Namespace) -> int:
    transport = RpcTransport(args.rpc)
    try:
        return _run(args, transport)
    except (NodeError, TransportError, CodecError, ValueError) as exc:
        print(f"fedchain committee: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        transport.close()


def _run(args: argparse.Namespace, transport: RpcTransport) -> int:
    if not 0 <= args.part < args.parts:
        raise NodeError("--part must be in [0, --parts)")
    key = read_key(args.key)
    ds = load(FL_DATASET, seed=0)
    holdout = np.array_split(np.arange(len(ds.y_test) // 2), args.parts)[args.part]
    x, y = ds.x_test[holdout], ds.y_test[holdout]
    trainer = make_trainer("softmax", ds.n_features, ds.n_classes)
    deadline = time.monotonic() + args.timeout_s
    scored: set[int] = set()
    next_nonce = 0
    while time.monotonic() < deadline and (not args.rounds or len(scored) < args.rounds):
        for item in _waiting_rounds(transport, key.public_key, scored):
            if args.rounds and len(scored) >= args.rounds:
                break
            try:
                fl_round, pairs = _score_round(transport, item, trainer, x, y)
            except NotYetError:
                continue  # our node answered the round before indexing its block: next poll
            # Our previous eval_scores may still sit in the mempool: never reuse its nonce.
            nonce = max(_nonce(transport, key.public_key), next_nonce)
            tx = sign_tx(key, transport.chain_id(), "eval_scores", nonce, [fl_round, pairs])
            result = transport.submit(tx.to_wire())
            if result.accepted:
                next_nonce = nonce + 1  # (it was never advanced: the mempool now refuses reuse)
            state = (
                f"sent tx {tx.hash().hex()}" if result.accepted else f"refused ({result.reason})"
            )
            print(f"committee: round {fl_round}: {len(pairs)} updates scored, {state}", flush=True)
            scored.add(fl_round)
        time.sleep(args.poll_s)
    return 0


def _waiting_rounds(transport: RpcTransport, me: bytes, done: set[int]) -> list[Value]:
    """Unsettled rounds still open for scoring that we have not scored yet."""
    height = transport.height()
    waiting: list[Value] = []
    for item in expect_seq(decode(transport.query("econ/unsettled")), "unsettled", 1_000):
        fl_round, _, until, _, scorers = expect_list(item, 5, "unsettled round")
        rnd = expect_int(fl_round, "round", 0)
        if rnd in done or me in expect_seq(scorers, "scorers", 10_000):
            continue
        if height < expect_int(until, "deadline", 0):
            waiting.append(item)
    return waiting


def _score_round(
    transport: RpcTransport,
    item: Value,
    trainer: Trainer,
    x: FloatArray,
    y: npt.NDArray[np.int64],
) -> tuple[int, list[Value]]:
    fl_round, _, _, updates, _ = expect_list(item, 5, "unsettled round")
    txs = []
    for update in expect_seq(updates, "updates", 100_000):
        _, tx_hash = expect_list(update, 2, "update")
        txs.append(decode_tx(_tx_bytes(transport, expect_bytes(tx_hash, "tx hash", 32).hex())))
    pairs: list[Value] = []
    if txs:
        weights = _base_model(transport, SubmitUpdate.decode(txs[0].body).base_hash)
        if weights.size != parameter_count(trainer.shapes()):
            raise NodeError("the committee scorer knows the testnet's softmax regression only")
        pairs = [[tx.sender, score_tx(trainer, weights, tx, x, y)] for tx in txs]
    return expect_int(fl_round, "round", 0), pairs


def _base_model(transport: RpcTransport, base_hash: bytes) -> FloatArray:
    """The model every update of the round names as its base, among the versions kept."""
    info = expect_list(decode(transport.query("round")), 8, "round")
    current = expect_int(info[5], "model version", 0)
    for version in range(current, max(-1, current - MODEL_VERSIONS_SEARCHED), -1):
        _, model_hash, _, weights_v = expect_list(
            decode(transport.query(f"model/{version}"), MODEL_LIMITS), 4, "model"
        )
        if model_hash == base_hash:
            return model_to_float(model_from_bytes(expect_bytes(weights_v, "weights")))
    raise NodeError(f"base model {base_hash.hex()[:16]} is no longer kept by the node")


def _tx_bytes(transport: RpcTransport, tx_hex: str) -> bytes:
    url = f"{transport.url}/txs/{tx_hex}?include=bytes"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read(64 * 1024 * 1024))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NotYetError(tx_hex) from None
        raise NodeError(f"/txs/{tx_hex}: {exc}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NodeError(f"/txs/{tx_hex}: {exc}") from None
    raw = body.get("tx") if isinstance(body, dict) else None
    if not isinstance(raw, str):
        raise NodeError(f"/txs/{tx_hex}: no transaction bytes in the answer")
    return bytes.fromhex(raw)


def _nonce(transport: RpcTransport, key: bytes) -> int:
    (nonce,) = expect_list(decode(transport.query(f"account/{key.hex()}")), 1, "account")
    return expect_int(nonce, "nonce", 0)
