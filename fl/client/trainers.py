"""Local trainers in numpy: multinomial logistic regression, a one-hidden-layer MLP and (in
fl/client/cnn.py) a small 1-D CNN.

Weights travel as one flat float vector laid out like the chain's model shapes, so the client
can turn a fetched model into parameters and a trained model into a delta without copies of
layer bookkeeping.  Training is minibatch SGD with a seeded generator.
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fl.client.cnn import CNN
from fl.model import Shapes, parameter_count

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int64]


class Trainer(Protocol):
    def shapes(self) -> Shapes: ...

    def init(self, rng: np.random.Generator) -> FloatArray: ...

    def train(
        self, weights: FloatArray, x: FloatArray, y: LabelArray, rng: np.random.Generator
    ) -> FloatArray: ...

    def predict(self, weights: FloatArray, x: FloatArray) -> LabelArray: ...


def accuracy(trainer: Trainer, weights: FloatArray, x: FloatArray, y: LabelArray) -> float:
    return float(np.mean(trainer.predict(weights, x) == y))


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


@dataclass(frozen=True, slots=True)
class SoftmaxRegression:
    n_features: int
    n_classes: int
    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 2.0
    l2: float = 1e-4

    def shapes(self) -> Shapes:
        return ((self.n_classes, self.n_features), (self.n_classes,))

    def init(self, rng: np.random.Generator) -> FloatArray:
        return np.zeros(parameter_count(self.shapes()))

    def _unpack(self, w: FloatArray) -> tuple[FloatArray, FloatArray]:
        k = self.n_classes * self.n_features
        return w[:k].reshape(self.n_classes, self.n_features), w[k:]

    def train(
        self, weights: FloatArray, x: FloatArray, y: LabelArray, rng: np.random.Generator
    ) -> FloatArray:
        w = weights.copy()
        matrix, bias = self._unpack(w)  # views into w
        onehot = np.eye(self.n_classes)[y]
        for _ in range(self.epochs):
            for idx in _batches(len(y), self.batch_size, rng):
                probs = _softmax(x[idx] @ matrix.T + bias)
                err = (probs - onehot[idx]) / len(idx)
                matrix -= self.learning_rate * (err.T @ x[idx] + self.l2 * matrix)
                bias -= self.learning_rate * err.sum(axis=0)
        return w

    def predict(self, weights: FloatArray, x: FloatArray) -> LabelArray:
        matrix, bias = self._unpack(weights)
        out: LabelArray = np.argmax(x @ matrix.T + bias, axis=1)
        return out


@dataclass(frozen=True, slots=True)
class MLP:
    n_features: int
    n_classes: int
    hidden: int = 32
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 0.2

    def shapes(self) -> Shapes:
        return (
            (self.hidden, self.n_features),
            (self.hidden,),
            (self.n_classes, self.hidden),
            (self.n_classes,),
        )

    def init(self, rng: np.random.Generator) -> FloatArray:
        w1 = rng.normal(0.0, np.sqrt(2.0 / self.n_features), (self.hidden, self.n_features))
        w2 = rng.normal(0.0, np.sqrt(1.0 / self.hidden), (self.n_classes, self.hidden))
        return np.concatenate(
            [w1.ravel(), np.zeros(self.hidden), w2.ravel(), np.zeros(self.n_classes)]
        )

    def _unpack(self, w: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        a = self.hidden * self.n_features
        b = a + self.hidden
        c = b + self.n_classes * self.hidden
        return (
            w[:a].reshape(self.hidden, self.n_features),
            w[a:b],
            w[b:c].reshape(self.n_classes, self.hidden),
            w[c:],
        )

    def train(
        self, weights: FloatArray, x: FloatArray, y: LabelArray, rng: np.random.Generator
    ) -> FloatArray:
        w = weights.copy()
        w1, b1, w2, b2 = self._unpack(w)
        onehot = np.eye(self.n_classes)[y]
        for _ in range(self.epochs):
            for idx in _batches(len(y), self.batch_size, rng):
                h_pre = x[idx] @ w1.T + b1
                h = np.maximum(h_pre, 0.0)
                probs = _softmax(h @ w2.T + b2)
                err = (probs - onehot[idx]) / len(idx)
                grad_h = (err @ w2) * (h_pre > 0)
                w2 -= self.learning_rate * (err.T @ h)
                b2 -= self.learning_rate * err.sum(axis=0)
                w1 -= self.learning_rate * (grad_h.T @ x[idx])
                b1 -= self.learning_rate * grad_h.sum(axis=0)
        return w

    def predict(self, weights: FloatArray, x: FloatArray) -> LabelArray:
        w1, b1, w2, b2 = self._unpack(weights)
        out: LabelArray = np.argmax(np.maximum(x @ w1.T + b1, 0.0) @ w2.T + b2, axis=1)
        return out


def make_trainer(kind: str, n_features: int, n_classes: int) -> Trainer:
    match kind:
        case "softmax":
            return SoftmaxRegression(n_features, n_classes)
        case "mlp":
            return MLP(n_features, n_classes)
        case "mlp_wide":  # for MNIST-1D: 100 hidden units, 5 local epochs (32 and 2 learn ~nothing)
            return MLP(n_features, n_classes, hidden=100, epochs=5)
        case "cnn":  # for signals such as MNIST-1D: the features are read as one channel
            return CNN(n_features, n_classes)
        case "torch":
            from fl.client.torch_trainer import TorchMLP

            return TorchMLP(n_features, n_classes)
        case _:
            from fl.client.errors import ClientError

            raise ClientError(f"unknown trainer {kind!r}: softmax, mlp, mlp_wide, cnn or torch")


def log_loss(trainer: Trainer, weights: FloatArray, x: FloatArray, y: LabelArray) -> float:
    """Mean cross-entropy of the numpy trainers' softmax outputs; other trainers get the 0-1
    error, which ranks models the same way, only more coarsely (used by adaptive attackers to
    score candidate aggregates on their own data)."""
    match trainer:
        case SoftmaxRegression():
            matrix, bias = trainer._unpack(weights)
            logits = x @ matrix.T + bias
        case MLP():
            w1, b1, w2, b2 = trainer._unpack(weights)
            logits = np.maximum(x @ w1.T + b1, 0.0) @ w2.T + b2
        case CNN():
            logits = trainer.logits(weights, x)
        case _:
            return float(np.mean(trainer.predict(weights, x) != y))
    probs = _softmax(logits)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12))))
