"""The per-coordinate sign vote (fl/aggregate/sign_vote.py): exact against a plain reference,
what each mode removes and keeps, off by default, and the same result in any arrival order and
in another process."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from consensus.codec import Value, encode
from fl.aggregate import ClientUpdate, aggregate
from fl.aggregate.sign_vote import MODES, sign_filter
from fl.errors import FLInvariantError, RejectedError
from fl.fixed import DELTA_ABS_MAX
from fl.model import Shapes
from fl.params import Params, encode_params, with_value
from tests.fl.helpers import key, new_app, run_block, update_tx

PARAMS = replace(Params(), rule="history_clip")


def _ref_filter(
    aggregate_row: list[int], rows: list[list[int]], weights: list[int], theta: int, mode: str
) -> list[int]:
    def sign(x: int) -> int:
        return (x > 0) - (x < 0)

    total = sum(weights)
    out = list(aggregate_row)
    for j, value in enumerate(aggregate_row):
        if theta == 0 or total == 0:
            continue
        if mode == "support":
            backing = sum(
                w for r, w in zip(rows, weights, strict=True) if sign(r[j]) == sign(value)
            )
            if value != 0 and backing * 1000 < theta * total:
                out[j] = 0
            continue
        agreement = abs(sum(w * sign(r[j]) for r, w in zip(rows, weights, strict=True)))
        if agreement * 1000 < theta * total:
            out[j] = -value if mode == "flip" else 0
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("theta", [0, 1, 300, 500, 1000])
def test_equals_the_plain_reference_at_the_bounds(mode: str, theta: int) -> None:
    rng = np.random.default_rng(theta + len(mode))
    rows = rng.choice([-DELTA_ABS_MAX, 0, DELTA_ABS_MAX], size=(40, 64)).astype(np.int64)
    weights = rng.integers(0, 1001, size=40).tolist()
    weights[0] = 0  # a dropped client does not vote
    agg = rng.integers(-DELTA_ABS_MAX, DELTA_ABS_MAX + 1, size=64, dtype=np.int64)
    out, changed = sign_filter(agg, rows, weights, theta, mode)
    expected = _ref_filter(agg.tolist(), rows.tolist(), weights, theta, mode)
    assert out.tolist() == expected
    assert changed == sum(a != b for a, b in zip(agg.tolist(), expected, strict=True))
    assert agg.tolist() != expected or theta == 0 or mode == "support"


def test_a_coordinate_a_minority_pushes_against_the_majority_is_removed() -> None:
    # 7 clients: coordinate 0 all push up (kept); coordinate 1 three push up hard while four
    # push down a little (the backdoor's shape: the aggregate goes up, most clients disagree).
    rows = np.array([[10, 900]] * 3 + [[10, -5]] * 4, dtype=np.int64)
    agg = np.array([10, 380], dtype=np.int64)
    weights = [1000] * 7
    supported, n_support = sign_filter(agg, rows, weights, 500, "support")
    assert supported.tolist() == [10, 0]
    assert n_support == 1
    zeroed, _ = sign_filter(agg, rows, weights, 500, "zero")  # |3 - 4| = 1 of 7 < 500
    assert zeroed.tolist() == [10, 0]
    flipped, _ = sign_filter(agg, rows, weights, 500, "flip")
    assert flipped.tolist() == [10, -380]
    # ... and with the minority carrying the most weight, it is the majority
    heavy, n_heavy = sign_filter(agg, rows, [1000] * 3 + [100] * 4, 500, "support")
    assert heavy.tolist() == [10, 380]
    assert n_heavy == 0


def test_bad_inputs_are_our_bug() -> None:
    rows = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(FLInvariantError):
        sign_filter(np.zeros(3, dtype=np.int64), rows, [1], 500, "zero")
    with pytest.raises(FLInvariantError):
        sign_filter(np.zeros(3, dtype=np.int64), rows, [1, 1], 500, "median")


def _coalition_rows(seed: int) -> np.ndarray:
    """21 honest clients and 9 that push coordinate 5 up together, each inside the radius."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(-3000, 3001, size=(30, 12), dtype=np.int64)
    rows[:, 5] = -rng.integers(0, 400, size=30)  # the honest task pulls coordinate 5 down a bit
    rows[21:, 5] = 4000
    return rows


def _run(rows: np.ndarray, params: Params, order: list[int]) -> np.ndarray:
    keys = [bytes([i + 1]) * 32 for i in range(rows.shape[0])]
    updates = [ClientUpdate(keys[i], 1, rows[i]) for i in order]
    result = aggregate("history_clip", updates, params)
    return result.delta


def test_history_clip_drops_the_coalitions_coordinate_only_when_the_vote_is_on() -> None:
    rows = _coalition_rows(1)
    order = list(range(30))
    off = _run(rows, PARAMS, order)
    assert off[5] > 0  # without the vote the coalition moves coordinate 5 its way
    on_params = with_value(with_value(PARAMS, "hist_sign_permille", 500), "hist_sign_mode", 2)
    on = _run(rows, on_params, order)
    assert on[5] == 0
    kept = [j for j in range(12) if j != 5 and on[j] != 0]
    assert kept  # coordinates a majority backs still move
    assert all(on[j] == off[j] for j in kept)


def test_the_vote_is_the_same_in_any_arrival_order() -> None:
    rows = _coalition_rows(2)
    params = with_value(with_value(PARAMS, "hist_sign_permille", 400), "hist_sign_mode", 1)
    outcomes = {
        _run(rows, params, np.random.default_rng(s).permutation(30).tolist()).tobytes()
        for s in range(5)
    }
    assert len(outcomes) == 1


def test_the_vote_is_off_by_default_and_its_parameters_are_checked() -> None:
    assert Params().hist_sign_permille == 0
    for name, bad in (
        ("hist_sign_permille", 1001),
        ("hist_sign_permille", -1),
        ("hist_sign_mode", 3),
    ):
        with pytest.raises(RejectedError):
            with_value(PARAMS, name, bad)


def test_a_chain_with_the_vote_replays_identically_in_other_processes(tmp_path: Path) -> None:
    shapes: Shapes = ((50, 400),)  # 20,000 parameters: large enough for BLAS to use threads
    rng = np.random.default_rng(2026)
    chains: list[Value] = []
    hashes: list[str] = []
    for mode in range(len(MODES)):
        params = with_value(with_value(PARAMS, "hist_sign_permille", 450), "hist_sign_mode", mode)
        params = replace(params, updates_per_round=12)
        app = new_app(params, shapes)
        blocks: list[Value] = []
        for _ in range(2):
            deltas = rng.integers(-40_000, 40_000, size=(12, 20_000), dtype=np.int64)
            deltas[:4, :300] = 90_000  # a coalition on a few coordinates: the vote has work
            txs = [update_tx(app, key(i), deltas[i]) for i in range(12)]
            for part in (txs[1::2], txs[0::2]):
                blocks.append(part)
                hashes.append(run_block(app, part).app_hash.hex())
        chains.append([encode_params(params), [list(s) for s in shapes], blocks])
    path = tmp_path / "blocks.bin"
    path.write_bytes(encode(chains))
    assert len(set(hashes)) == len(hashes)
    env = dict(os.environ, PYTHONHASHSEED="4242", OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-m", "tests.fl.replay", str(path)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert out.stdout.split() == hashes
