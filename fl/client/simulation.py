"""Federated training with attackers through the real application, for `fedchain eval`.

Everything goes through the chain's code path: each client's delta is clipped, quantized,
signed, admitted by check_tx, included by prepare/process_proposal and aggregated by
finalize_block with the chosen rule; accuracy is measured on the chain's model.  Only the
network and the consensus engine are left out (InProcessTransport makes the blocks).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from consensus.app import Genesis, GenesisValidator
from consensus.codec import decode, expect_bytes, expect_list, expect_seq
from consensus.crypto import PrivateKey
from fl.client import attacks
from fl.client.datasets import Dataset, load
from fl.client.errors import ClientError
from fl.client.partition import dirichlet
from fl.client.quantize import float_to_units
from fl.client.sdk import build_update, fetch_model
from fl.client.trainers import Trainer, accuracy, make_trainer
from fl.client.transport import InProcessTransport
from fl.genesis import build_app_state
from fl.params import Params, with_value

CHAIN_ID = "fedchain-eval"


@dataclass(frozen=True, slots=True)
class EvalConfig:
    dataset: str = "digits"
    trainer: str = "softmax"
    clients: int = 30
    rounds: int = 30
    alpha: float = 0.5
    attacker_fraction: float = 0.3
    seed: int = 0
    bits: int = 16
    # Governable parameters to set besides the rule, e.g. (("clip_drop_permille", 3000),).
    overrides: tuple[tuple[str, int | str], ...] = ()

    @property
    def attackers(self) -> int:
        return round(self.clients * self.attacker_fraction)


@dataclass(frozen=True, slots=True)
class EvalResult:
    rule: str
    attack: str
    accuracy: float  # of the chain's final model on the held-out split
    accuracy_by_round: tuple[float, ...]
    backdoor_success: float  # share of triggered non-target test samples sent to the target
    flagged_attackers: int  # attacker updates the rule flagged, summed over rounds
    flagged_honest: int
    model_hash: str


def run(
    config: EvalConfig,
    rule: str,
    attack: str,
    data: Dataset | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> EvalResult:
    attacks.check(attack)
    ds = data if data is not None else load(config.dataset, config.seed)
    trainer = make_trainer(config.trainer, ds.n_features, ds.n_classes)
    rng = np.random.default_rng(config.seed)
    parts = dirichlet(ds.y_train, config.clients, config.alpha, config.seed)
    keys = [PrivateKey.from_label(f"eval-client-{i}") for i in range(config.clients)]
    n_attackers = 0 if attack == "none" else config.attackers
    attacker = set(rng.permutation(config.clients)[:n_attackers].tolist())
    collusion = attacks.Collusion(config.clients, n_attackers)
    params = replace(Params(), rule=rule, updates_per_round=config.clients, round_deadline_blocks=4)
    for name, value in config.overrides:
        params = with_value(params, name, value)
    transport = _transport(trainer, rng, params)
    nonces = [0] * config.clients
    history: list[float] = []
    flagged_attackers = flagged_honest = 0
    for rnd in range(config.rounds):
        model = fetch_model(transport)
        if model.round != rnd:
            raise ClientError(f"round {model.round} open, expected {rnd}")
        deltas = [
            _local_delta(
                trainer, model.weights, ds, parts[i], attack if i in attacker else "none", rng
            )
            for i in range(config.clients)
        ]
        honest = [deltas[i] for i in range(config.clients) if i not in attacker]
        for i in range(config.clients):
            delta = deltas[i]
            if i in attacker:
                delta = attacks.craft(attack, delta, honest, collusion, rng)
            tx = build_update(
                keys[i], CHAIN_ID, nonces[i], model, delta, len(parts[i]), params, config.bits, rng
            )
            result = transport.submit(tx)
            if not result.accepted:
                raise ClientError(f"client {i} update refused: {result.reason}")
            nonces[i] += 1
        transport.wait_for_round(rnd + 1, blocks_max=8)
        flagged = _flagged_clients(transport)
        attacker_keys = {keys[i].public_key for i in attacker}
        flagged_attackers += len(flagged & attacker_keys)
        flagged_honest += len(flagged - attacker_keys)
        final = fetch_model(transport)
        history.append(accuracy(trainer, final.weights, ds.x_test, ds.y_test))
        if progress is not None:
            progress(rnd, history[-1])
    final = fetch_model(transport)
    return EvalResult(
        rule=rule,
        attack=attack,
        accuracy=history[-1] if history else accuracy(trainer, final.weights, ds.x_test, ds.y_test),
        accuracy_by_round=tuple(history),
        backdoor_success=_backdoor_success(trainer, final.weights, ds),
        flagged_attackers=flagged_attackers,
        flagged_honest=flagged_honest,
        model_hash=final.hash.hex(),
    )


def _transport(trainer: Trainer, rng: np.random.Generator, params: Params) -> InProcessTransport:
    weights = float_to_units(trainer.init(rng))
    genesis = Genesis(
        chain_id=CHAIN_ID,
        validators=(GenesisValidator(PrivateKey.from_label("eval-validator").public_key, 1),),
        app_state=build_app_state(trainer.shapes(), weights, params),
    )
    return InProcessTransport(genesis)


def _local_delta(
    trainer: Trainer,
    weights: np.ndarray,
    ds: Dataset,
    part: np.ndarray,
    attack: str,
    rng: np.random.Generator,
) -> np.ndarray:
    x, y = attacks.poison_data(attack, ds.x_train[part], ds.y_train[part], ds.n_classes)
    out: np.ndarray = trainer.train(weights, x, y, rng) - weights
    return out


def _flagged_clients(transport: InProcessTransport) -> set[bytes]:
    """Clients the rule flagged in the round that just closed (from the "round" query)."""
    round_info = expect_list(decode(transport.query("round")), 8, "round")
    outcome = round_info[7]
    if outcome is None:
        return set()
    flagged = expect_seq(expect_list(outcome, 8, "round outcome")[7], "flagged", 1 << 12)
    return {expect_bytes(expect_list(item, 3, "flag")[0], "client") for item in flagged}


def _backdoor_success(trainer: Trainer, weights: np.ndarray, ds: Dataset) -> float:
    mask = ds.y_test != attacks.BACKDOOR_TARGET
    if not mask.any():
        return 0.0
    predicted = trainer.predict(weights, attacks.add_trigger(ds.x_test[mask]))
    return float(np.mean(predicted == attacks.BACKDOOR_TARGET))
