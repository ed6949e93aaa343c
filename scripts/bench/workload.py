"""The one FL workload both sides of the Flower comparison run, built from fl.client only.

Same dataset split, Dirichlet partition, trainer (model, local epochs, batch size, learning
rate), initial weights and per-(client, round) random streams, so the only difference between
the fedchain run and the Flower run is the system that moves and averages the updates.  This
module imports neither flwr nor the node, so it loads in both virtual environments.
"""

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fl.client.datasets import Dataset, load
from fl.client.partition import dirichlet
from fl.client.quantize import float_to_units, model_to_float
from fl.client.trainers import Trainer, accuracy, make_trainer

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

STREAM_TRAIN = 0
STREAM_QUANTIZE = 1


@dataclass(frozen=True, slots=True)
class Workload:
    dataset: str = "digits"
    trainer: str = "softmax"
    clients: int = 30
    rounds: int = 20
    alpha: float = 0.5
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Workload":
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class Prepared:
    workload: Workload
    data: Dataset
    trainer: Trainer
    parts: tuple[IndexArray, ...]
    initial: FloatArray  # exactly representable on chain (went through fixed point once)

    def client_data(self, client: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        idx = self.parts[client]
        return self.data.x_train[idx], self.data.y_train[idx]

    def samples(self, client: int) -> int:
        return len(self.parts[client])

    def local_train(self, client: int, round_number: int, weights: FloatArray) -> FloatArray:
        """The trained weights of `client` in `round_number`, from `weights` (pure function)."""
        x, y = self.client_data(client)
        return self.trainer.train(weights, x, y, rng(self.workload, client, round_number))

    def accuracy(self, weights: FloatArray) -> float:
        return accuracy(self.trainer, weights, self.data.x_test, self.data.y_test)

    def trainer_settings(self) -> dict[str, Any]:
        """Model and optimizer settings, for the report (both sides use this very object)."""
        fields = ("epochs", "batch_size", "learning_rate", "l2", "hidden")
        return {
            "kind": type(self.trainer).__name__,
            "parameters": int(self.initial.size),
            **{f: getattr(self.trainer, f) for f in fields if hasattr(self.trainer, f)},
        }


def rng(
    workload: Workload, client: int, round_number: int, stream: int = STREAM_TRAIN
) -> np.random.Generator:
    """A generator that depends only on (seed, client, round, stream), on either side."""
    return np.random.default_rng([workload.seed, client, round_number, stream])


def prepare(workload: Workload) -> Prepared:
    data = load(workload.dataset, workload.seed)
    trainer = make_trainer(workload.trainer, data.n_features, data.n_classes)
    parts = dirichlet(data.y_train, workload.clients, workload.alpha, workload.seed)
    start = trainer.init(np.random.default_rng(workload.seed))
    initial = model_to_float(float_to_units(start))
    return Prepared(workload, data, trainer, tuple(parts), initial)


def fingerprint(prepared: Prepared) -> str:
    """sha256 over the partition and the initial weights: equal on both sides or the run is void."""
    h = hashlib.sha256()
    for part in prepared.parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part.astype("<i8").tobytes())
    h.update(prepared.initial.astype("<f8").tobytes())
    h.update(repr(prepared.trainer_settings()).encode())
    return h.hexdigest()
