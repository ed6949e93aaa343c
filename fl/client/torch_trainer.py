"""An optional PyTorch MLP trainer (install the `torch` extra); same contract as the numpy ones.

The import is guarded so the rest of the client works without torch.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fl.client.errors import ClientError
from fl.model import Shapes

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int64]


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ClientError("the torch trainer needs `pip install fedchain[torch]`") from None
    return torch


@dataclass(frozen=True, slots=True)
class TorchMLP:
    n_features: int
    n_classes: int
    hidden: int = 32
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 0.2

    def __post_init__(self) -> None:
        _torch()

    def shapes(self) -> Shapes:
        return (
            (self.hidden, self.n_features),
            (self.hidden,),
            (self.n_classes, self.hidden),
            (self.n_classes,),
        )

    def _module(self, weights: FloatArray) -> Any:
        torch = _torch()
        net = torch.nn.Sequential(
            torch.nn.Linear(self.n_features, self.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(self.hidden, self.n_classes),
        ).double()
        torch.nn.utils.vector_to_parameters(torch.from_numpy(weights.copy()), net.parameters())
        return net

    def init(self, rng: np.random.Generator) -> FloatArray:
        w1 = rng.normal(0.0, np.sqrt(2.0 / self.n_features), (self.hidden, self.n_features))
        w2 = rng.normal(0.0, np.sqrt(1.0 / self.hidden), (self.n_classes, self.hidden))
        return np.concatenate(
            [w1.ravel(), np.zeros(self.hidden), w2.ravel(), np.zeros(self.n_classes)]
        )

    def train(
        self, weights: FloatArray, x: FloatArray, y: LabelArray, rng: np.random.Generator
    ) -> FloatArray:
        torch = _torch()
        net = self._module(weights)
        optimizer = torch.optim.SGD(net.parameters(), lr=self.learning_rate)
        xs, ys = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(self.epochs):
            order = rng.permutation(len(y))
            for i in range(0, len(y), self.batch_size):
                idx = torch.from_numpy(order[i : i + self.batch_size])
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(xs[idx]), ys[idx])
                loss.backward()
                optimizer.step()
        out: FloatArray = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
        return out

    def predict(self, weights: FloatArray, x: FloatArray) -> LabelArray:
        torch = _torch()
        with torch.no_grad():
            logits = self._module(weights)(torch.from_numpy(x))
        out: LabelArray = logits.argmax(dim=1).numpy()
        return out
