"""How an evaluation-committee validator scores an FL update on its own held-out data.

One implementation for both places that score: `fedchain committee run`, the scorer a validator
runs next to its node (node/commands/committee.py), and `fedchain eval --committee`, the
harness that measures what the committee's scores do to slashing (fl/client/simulation.py).

Score: the held-out cross-entropy gain of a tenth of the update (about its weight in an
average of ten), mapped to [0, 1000] with 500 = no change.  Off chain and in floats: the chain
only ever sees the integer each validator signs, and settles on their stake-weighted median
(fl/economics/committee.py).
"""

import numpy as np
import numpy.typing as npt

from fl.client.quantize import FloatArray, model_to_float
from fl.client.trainers import Trainer, log_loss
from fl.fixed import delta_from_wire
from fl.txs import SignedTx, SubmitUpdate

STEP_FRACTION = 10
GAIN_TO_PERMILLE = 10_000  # a gain of 0.05 nats saturates the score
SCORE_NEUTRAL = 500
SCORE_MAX = 1000


def score_delta(
    trainer: Trainer,
    weights: FloatArray,
    delta: FloatArray,
    x: FloatArray,
    y: npt.NDArray[np.int64],
) -> int:
    """The score of moving `weights` by `delta`, on the held-out (x, y)."""
    before = log_loss(trainer, weights, x, y)
    after = log_loss(trainer, weights + delta / STEP_FRACTION, x, y)
    return int(min(SCORE_MAX, max(0, SCORE_NEUTRAL + GAIN_TO_PERMILLE * (before - after))))


def score_tx(
    trainer: Trainer,
    weights: FloatArray,
    tx: SignedTx,
    x: FloatArray,
    y: npt.NDArray[np.int64],
) -> int:
    """The score of a signed `submit_update`, its delta decoded exactly as the chain holds it."""
    return score_delta(trainer, weights, update_delta(tx), x, y)


def update_delta(tx: SignedTx) -> FloatArray:
    """The delta of a signed `submit_update` as the chain holds it, in model floats."""
    update = SubmitUpdate.decode(tx.body)
    units = delta_from_wire(update.delta, update.bits, update.scale_exp, update.count)
    return model_to_float(units)
