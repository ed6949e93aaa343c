"""The FL client: quantization, datasets, partitioning, trainers, attacks and the SDK loop."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from fl.client import attacks
from fl.client.datasets import load
from fl.client.errors import ClientError, TransportError
from fl.client.partition import dirichlet
from fl.client.quantize import clip_delta, dequantize, quantize
from fl.client.sdk import FLClient, build_update, fetch_model, next_nonce
from fl.client.trainers import MLP, SoftmaxRegression, accuracy, make_trainer
from fl.client.transport import InProcessTransport
from fl.fixed import DELTA_ABS_MAX, FRAC_BITS, ONE, delta_from_wire
from fl.genesis import build_app_state
from fl.params import Params


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_quantize_roundtrip_error_is_below_one_step(bits: int) -> None:
    rng = np.random.default_rng(bits)
    delta = rng.normal(0, 0.3, 500)
    q = quantize(delta, bits)
    step = 2.0**-q.scale_exp
    assert np.max(np.abs(dequantize(q) - delta)) <= step / 2 + 1e-12
    units = delta_from_wire(q.data, q.bits, q.scale_exp, q.count)
    # the chain's view equals the client's, floored to the model's 2**-16 grid
    assert np.max(np.abs(units / ONE - dequantize(q))) <= 2.0**-FRAC_BITS


def test_stochastic_rounding_is_unbiased() -> None:
    rng = np.random.default_rng(0)
    delta = np.full(20_000, 0.3 * 2.0**-8)
    q = quantize(delta * 0 + 1.0, 8)  # fixes the scale at 2**6 for a peak of 1.0
    assert q.scale_exp == 6
    values = np.concatenate([[1.0], delta[1:]])
    mean = dequantize(quantize(values, 8, rng))[1:].mean()
    assert abs(mean - 0.3 * 2.0**-8) < 2e-4


def test_clip_respects_the_chain_bounds() -> None:
    huge = np.full(10, 1e9)
    clipped = clip_delta(huge, norm_max_units=3 * ONE)
    assert np.linalg.norm(clipped) <= 3.0
    assert np.max(np.abs(clip_delta(huge, 10**9))) < DELTA_ABS_MAX / ONE
    with pytest.raises(ClientError):
        clip_delta(np.array([0.0, np.nan]), 10**9)


@pytest.mark.parametrize("name", ["digits", "breast_cancer"])
def test_builtin_datasets_are_scaled_and_split(name: str) -> None:
    ds = load(name, seed=1)
    assert ds.x_train.min() >= 0.0
    assert ds.x_train.max() <= 1.0
    assert len(ds.y_test) > 0
    assert set(np.unique(ds.y_train).tolist()) == set(range(ds.n_classes))


def test_csv_and_npz_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    np.savetxt(tmp_path / "d.csv", np.column_stack([x, y]), delimiter=",")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    for path in ("d.csv", "d.npz"):
        ds = load(str(tmp_path / path))
        assert ds.n_features == 3
        assert ds.n_classes == 2
    (tmp_path / "bad.csv").write_text("1,2\nx,y\n")
    with pytest.raises(ClientError):
        load(str(tmp_path / "bad.csv"))
    with pytest.raises(ClientError):
        load("no-such-dataset")


def test_dirichlet_partition_is_a_seeded_disjoint_cover() -> None:
    labels = load("digits").y_train
    parts = dirichlet(labels, 30, 0.5, seed=3)
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, np.arange(len(labels)))
    assert min(len(p) for p in parts) >= 5
    again = dirichlet(labels, 30, 0.5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    # small alpha: most clients hold only a few classes
    skewed = dirichlet(labels, 30, 0.1, seed=3)
    assert np.median([len(np.unique(labels[p])) for p in skewed]) < 6
    with pytest.raises(ClientError):
        dirichlet(labels, 10_000, 0.5, seed=0)


@pytest.mark.parametrize("kind", ["softmax", "mlp"])
def test_trainers_learn_digits(kind: str) -> None:
    ds = load("digits")
    trainer = make_trainer(kind, ds.n_features, ds.n_classes)
    rng = np.random.default_rng(0)
    w = trainer.init(rng)
    assert w.size == sum(int(np.prod(s)) for s in trainer.shapes())
    for _ in range(3):
        w = trainer.train(w, ds.x_train, ds.y_train, rng)
    assert accuracy(trainer, w, ds.x_test, ds.y_test) > 0.9
    assert isinstance(trainer, SoftmaxRegression | MLP)


def test_unknown_trainer_and_attack_are_refused() -> None:
    with pytest.raises(ClientError):
        make_trainer("xgboost", 3, 2)
    with pytest.raises(ClientError):
        attacks.check("teleport")


def test_attacks_do_what_they_say() -> None:
    rng = np.random.default_rng(0)
    own = rng.normal(size=20)
    honest = [rng.normal(1.0, 0.1, 20) for _ in range(7)]
    c = attacks.Collusion(10, 3)
    assert np.allclose(attacks.craft("sign_flip", own, honest, c, rng), -own)
    assert np.allclose(attacks.craft("sign_flip_x10", own, honest, c, rng), -10 * own)
    assert np.allclose(attacks.craft("ipm", own, honest, c, rng), -0.5 * np.mean(honest, axis=0))
    alie = attacks.craft("alie", own, honest, c, rng)
    assert np.all(alie < np.mean(honest, axis=0))  # shifted against the honest mean
    assert np.allclose(attacks.craft("backdoor", own, honest, c, rng), own * 10 / 3)
    x = np.zeros((4, 8))
    y = np.array([1, 2, 3, 4])
    assert attacks.poison_data("label_flip", x, y, 10)[1].tolist() == [8, 7, 6, 5]
    bx, by = attacks.poison_data("backdoor", x, y, 10)
    assert len(by) == 8
    assert np.all(bx[4:, -attacks.TRIGGER_FEATURES :] == 1.0)


def _transport(params: Params) -> tuple[InProcessTransport, SoftmaxRegression]:
    ds = load("digits")
    trainer = SoftmaxRegression(ds.n_features, ds.n_classes)
    genesis = Genesis(
        chain_id="sdk-test",
        validators=(GenesisValidator(PrivateKey.from_label("v").public_key, 1),),
        app_state=build_app_state(trainer.shapes(), None, params),
    )
    return InProcessTransport(genesis), trainer


def test_sdk_loop_trains_the_chain_model() -> None:
    params = replace(Params(), updates_per_round=4, rule="fedavg")
    transport, trainer = _transport(params)
    ds = load("digits")
    parts = dirichlet(ds.y_train, 4, 1.0, seed=0)
    clients = [
        FLClient(
            PrivateKey.from_label(f"c{i}"), transport, trainer, ds.x_train[p], ds.y_train[p], i
        )
        for i, p in enumerate(parts)
    ]
    first_model = fetch_model(transport)
    for _ in range(3):
        models = []
        for client in clients:
            model, result = client.run_round()
            assert result.accepted, result.reason
            models.append(model)
        clients[0].wait_next_round(models[0])
    model = fetch_model(transport)
    assert model.round == 3
    assert model.version == 3
    assert accuracy(trainer, model.weights, ds.x_test, ds.y_test) > 0.85
    # an update built on a stale model is refused with the reason
    stale_model = replace(model, round=2, hash=first_model.hash)
    tx = build_update(
        clients[1].key,
        "sdk-test",
        next_nonce(transport, clients[1].key),
        stale_model,
        np.zeros(model.weights.size),
        10,
        params,
    )
    stale = transport.submit(tx)
    assert not stale.accepted
    assert "round 2" in stale.reason
    garbage = transport.submit(b"\x90")
    assert not garbage.accepted
    assert "malformed" in garbage.reason


def test_wait_for_a_round_that_never_opens_raises() -> None:
    transport, _ = _transport(replace(Params(), updates_per_round=2, round_deadline_ms=10_000))
    with pytest.raises(TransportError):
        transport.wait_for_round(1, blocks_max=3)
    with pytest.raises(TransportError):
        transport.query("nope")


def test_mlp_trains_through_the_chain() -> None:
    from fl.client.simulation import EvalConfig, run

    config = EvalConfig(trainer="mlp", clients=8, rounds=4, alpha=1.0)
    result = run(config, "centered_clip", "none")
    assert len(result.accuracy_by_round) == 4
    assert result.accuracy > 0.6


def test_torch_trainer_trains_or_names_the_extra() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ClientError, match=r"fedchain\[torch\]"):
            make_trainer("torch", 64, 10)
        return
    ds = load("digits")
    trainer = make_trainer("torch", ds.n_features, ds.n_classes)
    rng = np.random.default_rng(0)
    w = trainer.train(trainer.init(rng), ds.x_train, ds.y_train, rng)
    assert accuracy(trainer, w, ds.x_test, ds.y_test) > 0.8
