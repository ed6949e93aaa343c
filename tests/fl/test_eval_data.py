"""Data for `fedchain eval`: few classes over many clients still partition."""

import numpy as np

from fl.client.datasets import load
from fl.client.partition import dirichlet


def test_two_classes_over_thirty_clients_give_everyone_enough_samples() -> None:
    """breast_cancer (2 classes, 455 training samples) over 30 clients at Dirichlet 0.5: no
    draw alone gives every client 5 samples (this raised before the top-up)."""
    labels = load("breast_cancer", 0).y_train
    parts = dirichlet(labels, 30, 0.5, seed=0)
    assert min(len(p) for p in parts) >= 5
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(labels)))  # a disjoint cover
    again = dirichlet(labels, 30, 0.5, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    # the draw's skew survives the top-up: some client is far from the global class balance
    shares = [float(np.mean(labels[p])) for p in parts]
    assert max(shares) - min(shares) > 0.5
