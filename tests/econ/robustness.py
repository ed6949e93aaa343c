"""Incentives under attack: FL rounds through the real application with stake and slashing.

The same path as `fedchain eval` (fl/client/simulation.py): each client trains on its Dirichlet
shard, attackers poison, updates are clipped, quantized, signed, admitted by check_tx and
aggregated by finalize_block; only the network and consensus engine are left out.  What this
adds: an economics genesis in which every client bonds stake, and per-round figures of what
the incentives layer did with the verdicts -- who was slashed (precision and recall against
the true attackers, counted over distinct clients since round 0), the mean stake of honest
clients and of attackers, and the model's accuracy.  Jailed clients sit out their rounds.
"""

from dataclasses import dataclass

import numpy as np

from consensus.app import Genesis, GenesisValidator
from consensus.codec import Value
from consensus.crypto import PrivateKey
from fl.client import attacks
from fl.client.committee import score_tx
from fl.client.datasets import load
from fl.client.partition import dirichlet
from fl.client.quantize import float_to_units
from fl.client.sdk import build_update, fetch_model
from fl.client.trainers import accuracy, make_trainer
from fl.client.transport import InProcessTransport
from fl.economics.genesis import SECTION, Allocation, EconGenesis
from fl.economics.params import EconParams
from fl.genesis import build_app_state
from fl.params import Params
from fl.txs import decode_tx, sign_tx

CHAIN_ID = "fedchain-econ-eval"
STAKE_INITIAL = 1_000
COMMITTEE_BLOCKS = 2
VALIDATOR_KEYS = [PrivateKey.from_label(f"econ-eval-validator-{i}") for i in range(4)]


@dataclass(frozen=True, slots=True)
class RoundFigures:
    round: int
    submitted: int
    slashed_attackers: int  # distinct attackers slashed so far
    slashed_honest: int  # distinct honest clients slashed so far
    attackers: int
    precision: float
    recall: float
    honest_tokens_mean: float  # stake plus balance: rewards are paid liquid by default
    attacker_tokens_mean: float
    accuracy: float


def run(
    rounds: int = 5,
    clients: int = 30,
    attacker_fraction: float = 0.3,
    attack: str = "label_flip",
    rule: str = "centered_clip",
    seed: int = 0,
    committee: bool = False,
    liar: bool = False,
) -> list[RoundFigures]:
    """`committee`: settle by the evaluation committee (4 validators scoring on held-out data,
    stake-weighted median) instead of the on-chain agreement score; `liar`: one of the four
    inverts its scores (rewarding attackers), which the weighted median must shrug off."""
    ds = load("digits", seed)
    trainer = make_trainer("softmax", ds.n_features, ds.n_classes)
    rng = np.random.default_rng(seed)
    parts = dirichlet(ds.y_train, clients, 0.5, seed)
    keys = [PrivateKey.from_label(f"econ-eval-client-{i}") for i in range(clients)]
    n_attackers = round(clients * attacker_fraction)
    attacker = set(rng.permutation(clients)[:n_attackers].tolist())
    attacker_keys = {keys[i].public_key for i in attacker}
    collusion = attacks.Collusion(clients, n_attackers)
    params = Params(rule=rule, updates_per_round=clients, round_deadline_ms=4_000)
    econ = EconGenesis(
        allocations=tuple(Allocation(k.public_key, 0, STAKE_INITIAL) for k in keys),
        reserve=10_000_000,
        params=EconParams(
            client_stake_min=100, committee_blocks=COMMITTEE_BLOCKS if committee else 0
        ),
    )
    genesis = Genesis(
        chain_id=CHAIN_ID,
        validators=tuple(GenesisValidator(v.public_key, 10) for v in VALIDATOR_KEYS),
        app_state=build_app_state(
            trainer.shapes(), float_to_units(trainer.init(rng)), params, ((SECTION, econ.encode()),)
        ),
    )
    transport = InProcessTransport(genesis)
    nonces = [0] * clients
    validator_nonces = [0] * len(VALIDATOR_KEYS)
    # Each validator's held-out data: a quarter of the first half of the test split.
    holdout = len(ds.y_test) // 2
    slices = np.array_split(np.arange(holdout), len(VALIDATOR_KEYS))
    figures: list[RoundFigures] = []
    for rnd in range(rounds):
        model = fetch_model(transport)
        deltas = []
        for i in range(clients):
            x, y = attacks.poison_data(
                attack if i in attacker else "none",
                ds.x_train[parts[i]],
                ds.y_train[parts[i]],
                ds.n_classes,
            )
            deltas.append(trainer.train(model.weights, x, y, rng) - model.weights)
        honest = [deltas[i] for i in range(clients) if i not in attacker]
        submitted = 0
        round_txs: list[bytes] = []
        for i in range(clients):
            delta = deltas[i]
            if i in attacker:
                delta = attacks.craft(attack, delta, honest, collusion, rng)
            tx = build_update(
                keys[i], CHAIN_ID, nonces[i], model, delta, len(parts[i]), params, 16, rng
            )
            if transport.submit(tx).accepted:  # jailed clients are refused by check_tx
                nonces[i] += 1
                submitted += 1
                round_txs.append(tx)
        transport.wait_for_round(rnd + 1, blocks_max=8)
        if committee:
            for v, key in enumerate(VALIDATOR_KEYS):
                idx = slices[v]
                pairs: list[Value] = []
                for raw in round_txs:
                    signed = decode_tx(raw)
                    score = score_tx(trainer, model.weights, signed, ds.x_test[idx], ds.y_test[idx])
                    pairs.append([signed.sender, 1000 - score if liar and v == 3 else score])
                body: Value = [rnd, pairs]
                tx = sign_tx(key, CHAIN_ID, "eval_scores", validator_nonces[v], body).to_wire()
                if transport.submit(tx).accepted:
                    validator_nonces[v] += 1
            for _ in range(COMMITTEE_BLOCKS):
                transport.produce_block()
        econ_state = transport.app.state.incentives.econ
        slashed = {k for k, rec in econ_state.clients.items() if rec.slashed > 0}
        hit = len(slashed & attacker_keys)
        ledger = econ_state.ledger
        stakes = {
            k.public_key: ledger.stake(k.public_key) + ledger.balance(k.public_key) for k in keys
        }
        honest_stakes = [s for k, s in stakes.items() if k not in attacker_keys]
        attacker_stakes = [s for k, s in stakes.items() if k in attacker_keys]
        final = fetch_model(transport)
        figures.append(
            RoundFigures(
                round=rnd,
                submitted=submitted,
                slashed_attackers=hit,
                slashed_honest=len(slashed) - hit,
                attackers=n_attackers,
                precision=hit / len(slashed) if slashed else 1.0,
                recall=hit / n_attackers if n_attackers else 1.0,
                honest_tokens_mean=float(np.mean(honest_stakes)),
                attacker_tokens_mean=float(np.mean(attacker_stakes)) if attacker_stakes else 0.0,
                accuracy=accuracy(trainer, final.weights, ds.x_test, ds.y_test),
            )
        )
    return figures


def table(figures: list[RoundFigures]) -> str:
    lines = [
        "| round | submitted | slashed attackers | slashed honest | precision | recall "
        "| honest tokens (mean) | attacker tokens (mean) | accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.round} | {f.submitted} | {f.slashed_attackers}/{f.attackers} "
            f"| {f.slashed_honest} | {f.precision:.2f} | {f.recall:.2f} "
            f"| {f.honest_tokens_mean:.0f} | {f.attacker_tokens_mean:.0f} | {f.accuracy:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """`python -m tests.econ.robustness [rule ...]`: print one table per rule (label flip)."""
    for rule in argv or ["centered_clip", "multi_krum", "median", "trimmed_mean", "fedavg"]:
        print(f"\nrule={rule} attack=label_flip clients=30 attackers=9 seed=0\n")
        print(table(run(rule=rule)))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
