"""The numpy 1-D CNN: backprop matches finite differences, training fits its data, one seed gives
one set of weights, and the eval helpers (make_trainer, log_loss) know it."""

import numpy as np
import pytest

from fl.client.cnn import CNN
from fl.client.trainers import accuracy, log_loss, make_trainer
from fl.model import parameter_count


def _tiny(
    channels: tuple[int, ...], strides: tuple[int, ...], seed: int
) -> tuple[CNN, np.ndarray, np.ndarray, np.ndarray]:
    trainer = CNN(11, 4, channels=channels, strides=strides, kernel=3)
    rng = np.random.default_rng(seed)
    # random biases too, so some ReLUs sit off and the masks are exercised both ways
    weights = trainer.init(rng) + rng.normal(0.0, 0.2, parameter_count(trainer.shapes()))
    x = rng.normal(size=(5, 11))
    y = rng.integers(0, 4, 5)
    return trainer, weights, x, y


@pytest.mark.parametrize(
    ("channels", "strides"),
    [((2,), (1,)), ((3, 2), (2, 1)), ((2, 3, 2), (1, 2, 2)), ((3, 3), (3, 2))],
)
def test_gradient_matches_central_finite_differences(
    channels: tuple[int, ...], strides: tuple[int, ...]
) -> None:
    trainer, w, x, y = _tiny(channels, strides, seed=len(channels))
    loss, grad = trainer.loss_and_gradient(w, x, y)
    assert grad.shape == w.shape
    step = 1e-6
    numeric = np.empty_like(w)
    for i in range(w.size):
        bump = np.zeros_like(w)
        bump[i] = step
        up = trainer.loss_and_gradient(w + bump, x, y)[0]
        down = trainer.loss_and_gradient(w - bump, x, y)[0]
        numeric[i] = (up - down) / (2 * step)
    assert np.max(np.abs(numeric - grad)) < 1e-7
    assert np.max(np.abs(grad)) > 1e-3  # the comparison is not between two zero vectors
    assert loss == pytest.approx(log_loss(trainer, w, x, y), rel=1e-12)


def test_layout_matches_the_shapes() -> None:
    trainer = CNN(40, 10)
    shapes = trainer.shapes()
    # 40 -> 40 -> 20 -> 10 positions; the dense layer reads 10 positions x 16 channels
    assert shapes == (
        (16, 1, 5),
        (16,),
        (16, 16, 5),
        (16,),
        (16, 16, 5),
        (16,),
        (10, 160),
        (10,),
    )
    w = trainer.init(np.random.default_rng(0))
    assert w.size == parameter_count(shapes) == 4298
    with pytest.raises(ValueError, match="weights"):
        trainer.predict(w[:-1], np.zeros((2, 40)))
    with pytest.raises(ValueError, match="one entry per"):
        CNN(40, 10, channels=(4, 4), strides=(2,))


def _separable(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes: a bump at a random place, a dip at a random place, or flat noise."""
    y = rng.integers(0, 3, n)
    x = rng.normal(0.0, 0.1, (n, 24))
    where = rng.integers(3, 21, n)
    for i in range(n):
        if y[i] < 2:
            x[i, where[i] - 2 : where[i] + 3] += 1.0 if y[i] == 0 else -1.0
    return x, y


def test_training_lowers_the_loss_and_learns_a_shift_invariant_task() -> None:
    rng = np.random.default_rng(7)
    x, y = _separable(rng, 240)
    trainer = CNN(24, 3, channels=(4, 4), strides=(1, 2), epochs=6)
    w0 = trainer.init(np.random.default_rng(1))
    before = log_loss(trainer, w0, x, y)
    w = trainer.train(w0, x, y, np.random.default_rng(2))
    after = log_loss(trainer, w, x, y)
    assert after < 0.1 * before
    x_test, y_test = _separable(np.random.default_rng(8), 120)
    assert accuracy(trainer, w, x_test, y_test) > 0.9


def test_one_seed_gives_identical_weights() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 40)), rng.integers(0, 10, 50)
    trainer = make_trainer("cnn", 40, 10)
    assert isinstance(trainer, CNN)
    runs = []
    for _ in range(2):
        gen = np.random.default_rng(11)
        runs.append(trainer.train(trainer.init(gen), x, y, gen))
    assert np.array_equal(runs[0], runs[1])
    gen = np.random.default_rng(12)
    assert not np.array_equal(runs[0], trainer.train(trainer.init(gen), x, y, gen))


def test_train_leaves_the_given_weights_alone() -> None:
    trainer, w, x, y = _tiny((2, 2), (1, 2), seed=5)
    kept = w.copy()
    out = trainer.train(w, x, y, np.random.default_rng(0))
    assert np.array_equal(w, kept)
    assert not np.array_equal(out, kept)
