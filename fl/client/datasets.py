"""Datasets: scikit-learn's bundled ones (offline), MNIST-1D and CSV/NPZ files a user brings.

MNIST-1D (Greydanus 2020) is generated locally by the optional `mnist1d` package
(`pip install fedchain[mnist1d]`) with the package's standard arguments (5,000 signals of
length 40, generator seed 42): an image-like task, harder than digits for a linear model, with
no download.

Features are scaled to [0, 1] per column with the training split's range, labels become
0..C-1.  The split is stratified and seeded, so one seed names one experiment.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fl.client.errors import ClientError

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int64]

BUILTIN = ("digits", "breast_cancer", "mnist1d")


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    x_train: FloatArray
    y_train: LabelArray
    x_test: FloatArray
    y_test: LabelArray
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def load(name: str, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """`name` is "digits", "breast_cancer", or a path to a .csv (label last) or .npz (x, y)."""
    match name:
        case "digits":
            from sklearn.datasets import load_digits

            bunch = load_digits()
            x, y = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
        case "breast_cancer":
            from sklearn.datasets import load_breast_cancer

            bunch = load_breast_cancer()
            x, y = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
        case "mnist1d":
            x, y = _mnist1d()
        case path if path.endswith(".csv"):
            x, y = _load_csv(Path(path))
        case path if path.endswith(".npz"):
            x, y = _load_npz(Path(path))
        case _:
            raise ClientError(f"unknown dataset {name!r}: use {BUILTIN} or a .csv/.npz path")
    return split(name, x, y, seed, test_fraction)


def split(
    name: str, x: FloatArray, y: npt.NDArray[np.generic], seed: int, test_fraction: float
) -> Dataset:
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] < 4:
        raise ClientError(f"dataset {name}: need x (n, d) and y (n,) with n >= 4")
    if not np.all(np.isfinite(x)):
        raise ClientError(f"dataset {name}: features contain NaN or infinity")
    classes, labels = np.unique(y, return_inverse=True)
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in range(len(classes)):
        members = rng.permutation(np.flatnonzero(labels == c))
        test_mask[members[: round(len(members) * test_fraction)]] = True
    x_train, x_test = x[~test_mask], x[test_mask]
    low, high = x_train.min(axis=0), x_train.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return Dataset(
        name,
        (x_train - low) / span,
        labels[~test_mask].astype(np.int64),
        np.clip((x_test - low) / span, -1.0, 2.0),
        labels[test_mask].astype(np.int64),
        len(classes),
    )


def _mnist1d() -> tuple[FloatArray, npt.NDArray[np.generic]]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise ClientError(
            "dataset mnist1d needs the optional package: pip install mnist1d"
        ) from None
    import random

    # make_dataset seeds the global generators; leave them as they were
    saved_np, saved_py = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(saved_np)
        random.setstate(saved_py)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float64)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y


def _load_csv(path: Path) -> tuple[FloatArray, npt.NDArray[np.generic]]:
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None
    if table.shape[1] < 2:
        raise ClientError(f"{path}: need at least one feature column and a label column")
    return table[:, :-1], table[:, -1]


def _load_npz(path: Path) -> tuple[FloatArray, npt.NDArray[np.generic]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return np.asarray(archive["x"], dtype=np.float64), np.asarray(archive["y"])
    except (OSError, ValueError, KeyError) as exc:
        raise ClientError(f"cannot read {path} (needs arrays 'x' and 'y'): {exc}") from None
