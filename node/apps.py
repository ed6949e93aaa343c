"""Which Application a chain runs, chosen by genesis.json's `app` field, built in one place.

"fl" is the federated-learning application (fl/app.py); "kv" is consensus's tiny key-value app,
used by benchmarks and tests that measure the chain without model math.
"""

from dataclasses import replace

import numpy as np

from consensus.app import Application
from node.errors import ConfigError

# The testnet's FL task: softmax regression on sklearn's digits, the model every client trains.
FL_DATASET = "digits"
FL_TRAINER = "softmax"
FL_MODEL_SEED = 0


def build_app(name: str) -> Application:
    match name:
        case "fl":
            from fl.app import FLApp

            return FLApp()
        case "kv":
            from consensus.kvapp import KVApp

            app: Application = KVApp()
            return app
        case _:
            raise ConfigError(f"app: unknown application {name!r}")


def genesis_app_state(name: str, clients: int, round_deadline_blocks: int = 40) -> bytes:
    """Canonical genesis app state.  For "fl": the initial digits model, and rounds that close
    once every client has submitted (or after `round_deadline_blocks`)."""
    match name:
        case "fl":
            from fl.client.datasets import load
            from fl.client.quantize import float_to_units
            from fl.client.trainers import make_trainer
            from fl.genesis import build_app_state
            from fl.params import Params

            ds = load(FL_DATASET, seed=FL_MODEL_SEED)
            trainer = make_trainer(FL_TRAINER, ds.n_features, ds.n_classes)
            weights = float_to_units(trainer.init(np.random.default_rng(FL_MODEL_SEED)))
            params = replace(
                Params(),
                updates_per_round=max(1, clients),
                round_deadline_blocks=round_deadline_blocks,
            )
            return build_app_state(trainer.shapes(), weights, params)
        case "kv":
            return b""
        case _:
            raise ConfigError(f"app: unknown application {name!r}")
