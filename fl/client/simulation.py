"""Federated training with attackers through the real application, for `fedchain eval`.

Everything goes through the chain's code path: each client's delta is clipped, quantized,
signed, admitted by check_tx, included by prepare/process_proposal and aggregated by
finalize_block with the chosen rule; accuracy is measured on the chain's model.  Only the
network and the consensus engine are left out (InProcessTransport makes the blocks).

A round: every client trains on its shard (attackers on poisoned data where the attack says so);
the honest updates are built and decoded as the chain will see them; then the attackers craft
theirs.  Per-client attacks (fl/client/attacks/basic.py) keep their original order of random
draws, so their figures reproduce the earlier tables exactly.  Coordinated attacks
(fl/client/attacks/adversary.py) see the honest updates in model units -- this round's
("current": updates are public before the round closes) or the last round's ("past": what is
left to them when updates are committed before they are revealed) -- and can run the chain's
rule on candidate sets.

The economics layer decides slashes; the harness reads them from the "client_slashed" events
of finalize_block.  `economics="open"` is the chain without an economics section (nobody holds
stake, so nobody is jailed and the slash amount is zero, but the decisions are the same);
`"staked"` bonds stake for every client, and jailed clients sit out their rounds.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import numpy.typing as npt

from consensus.app import BlockInfo, FinalizeResult, Genesis, GenesisValidator
from consensus.codec import Value, decode, expect_bytes, expect_list, expect_seq
from consensus.crypto import PrivateKey
from fl.aggregate import ClientUpdate
from fl.app import FLApp
from fl.client import attacks
from fl.client.attacks.view import ChainAggregator, Oracle, RoundView
from fl.client.attacks.withhold import only, reveals_now
from fl.client.committee import score_tx
from fl.client.datasets import Dataset, load
from fl.client.errors import ClientError
from fl.client.eval_sender import RoundSender
from fl.client.partition import dirichlet
from fl.client.quantize import float_to_units
from fl.client.sdk import fetch_model
from fl.client.trainers import Trainer, accuracy, log_loss, make_trainer
from fl.client.transport import InProcessTransport
from fl.economics.clients import stake_votes
from fl.economics.genesis import OPEN_GENESIS, SECTION, Allocation, EconGenesis
from fl.economics.params import EconParams, is_econ_param
from fl.economics.params import with_value as econ_with_value
from fl.economics.state import EconState
from fl.fixed import ONE, IntArray, delta_from_wire
from fl.genesis import build_app_state
from fl.params import Params, with_value
from fl.txs import KIND_REVEAL_UPDATE, SubmitUpdate, decode_tx, reveal_parts, sign_tx

CHAIN_ID = "fedchain-eval"
KNOWLEDGE = ("current", "past", "withhold")
OBJECTIVES = ("progress", "loss", "error", "class_loss")
ECONOMICS = ("open", "staked")
STAKE_INITIAL = 1_000
COMMITTEE_BLOCKS = 2  # blocks a closed round waits for the committee's scores

FloatArray = npt.NDArray[np.float64]


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
    # Which honest updates coordinated attackers see: this round's ("current": a single-phase
    # chain), the last round's ("past": what commit-reveal leaves them), or the last round's
    # while crafting and this round's when choosing which commitments to reveal ("withhold").
    knowledge: str = "current"
    # What the adaptive attack maximises: "progress" (how far the aggregate is pulled back from
    # the honest mean's direction), or on the attackers' own clean data "loss" (cross-entropy),
    # "error" (0-1 error) or "class_loss" (the largest per-class cross-entropy).  On digits at
    # 30% (seeds 0-2, adaptive_unflagged vs centered_clip) they gave 84.8, 83.2, 81.8 and 78.8%.
    objective: str = "class_loss"
    economics: str = "open"
    # Validators in the evaluation committee (0: none, rounds settle on the on-chain agreement
    # score).  Each scores every update of a closed round on its own part of the first half of
    # the test split with the scorer `fedchain committee run` uses, and sends `eval_scores`.
    committee: int = 0

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
    worst_class_accuracy: float = 0.0
    # The worst honest client's accuracy on its own label mix: per-class held-out accuracy
    # weighted by the client's training label shares.
    worst_client_accuracy: float = 0.0
    attackers: int = 0
    slashed_attackers: int = 0  # distinct clients the economics layer slashed over the run
    slashed_honest: int = 0
    refused_attackers: int = 0  # attacker updates check_tx refused (jailed, out of bounds)
    withheld_attackers: int = 0  # attacker updates withheld after seeing the honest ones
    committee_settled: int = 0  # rounds settled on the evaluation committee's scores
    # Tokens the incentives layer paid per client over the run, mean over each group.
    reward_honest: float = 0.0
    reward_attackers: float = 0.0
    reward_honest_least: int = 0  # what the least-paid honest client got

    @property
    def slash_precision(self) -> float:
        slashed = self.slashed_attackers + self.slashed_honest
        return self.slashed_attackers / slashed if slashed else 1.0

    @property
    def slash_recall(self) -> float:
        return self.slashed_attackers / self.attackers if self.attackers else 1.0


class _RecordingApp(FLApp):
    """The FL app, keeping the events of every finalized block for the slashing report."""

    def __init__(self) -> None:
        super().__init__()
        self.slashed: set[bytes] = set()
        self.committee_settled = 0  # rounds settled on the committee's scores

    def finalize_block(self, txs: Sequence[bytes], block: BlockInfo) -> FinalizeResult:
        result = super().finalize_block(txs, block)
        for event in result.events:
            self.committee_settled += event.kind == "committee_settled"
            if event.kind == "client_slashed":
                attrs = dict(event.attributes)
                if "client" in attrs:
                    self.slashed.add(bytes.fromhex(attrs["client"]))
        return result


def run(
    config: EvalConfig,
    rule: str,
    attack: str,
    data: Dataset | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> EvalResult:
    attacks.check_eval(attack)
    if (
        config.knowledge not in KNOWLEDGE
        or config.economics not in ECONOMICS
        or config.objective not in OBJECTIVES
    ):
        raise ClientError(
            f"knowledge one of {KNOWLEDGE}, economics one of {ECONOMICS}, "
            f"objective one of {OBJECTIVES}"
        )
    ds = data if data is not None else load(config.dataset, config.seed)
    trainer = make_trainer(config.trainer, ds.n_features, ds.n_classes)
    rng = np.random.default_rng(config.seed)
    attack_rng = np.random.default_rng([config.seed, 0xA77AC])
    parts = dirichlet(ds.y_train, config.clients, config.alpha, config.seed)
    keys = [PrivateKey.from_label(f"eval-client-{i}") for i in range(config.clients)]
    n_attackers = 0 if attack == "none" else config.attackers
    attacker = set(rng.permutation(config.clients)[:n_attackers].tolist())
    attacker_ids = sorted(attacker)
    collusion = attacks.Collusion(config.clients, n_attackers)
    coordinated = attacks.is_coordinated(attack)
    adversary = attacks.Adversary(attack, collusion) if coordinated else None
    attacker_part = np.concatenate([parts[i] for i in attacker_ids]) if attacker_ids else None
    params = replace(Params(), rule=rule, updates_per_round=config.clients, round_deadline_ms=4_000)
    econ_params = _econ_params(config)
    for name, value in config.overrides:
        if not is_econ_param(name):
            params = with_value(params, name, value)
    app = _RecordingApp()
    validators = _validator_keys(config.committee)
    transport = _transport(
        trainer, rng, params, econ_params, config.economics, keys, validators, app
    )
    committee = _Committee(trainer, ds, validators) if config.committee else None
    nonces = [0] * config.clients
    sender = RoundSender(transport, keys, nonces, config.seed, config.bits)
    if sender.commit_reveal and committee is not None:
        raise ClientError("the committee harness scores single-phase updates only")
    if sender.commit_reveal and coordinated and config.knowledge == "current":
        raise ClientError("commit-reveal rounds hide this round's updates: --knowledge past")
    history: list[float] = []
    flagged_attackers = flagged_honest = refused = withheld = 0
    known_past: tuple[ClientUpdate, ...] = ()
    last_weights: FloatArray | None = None
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
        honest_updates: list[ClientUpdate] = []
        round_txs: list[bytes] = []
        for i in range(config.clients):
            if coordinated and i in attacker:
                continue  # crafted below, once every honest update is known
            delta = deltas[i]
            if i in attacker:
                delta = attacks.craft(attack, delta, honest, collusion, rng)
            result, tx = sender.send(i, model, delta, len(parts[i]), params, rng)
            if not result.accepted:
                if i not in attacker and config.economics == "open":
                    raise ClientError(f"honest client {i} update refused: {result.reason}")
                refused += i in attacker
                continue
            round_txs.append(tx)
            if i not in attacker:
                honest_updates.append(_decoded(tx))
        if adversary is not None:
            known = tuple(honest_updates)
            if config.knowledge != "current":
                known = known_past
            if not known:  # round 0 under "past", or every honest client jailed
                known = _proxies(keys, attacker, [deltas[i] for i in attacker_ids])
            econ = app.state.incentives.econ
            known = _with_votes(econ, known)
            view = RoundView(
                round=rnd,
                honest=np.stack([u.delta.astype(np.float64) / ONE for u in known]),
                own=np.stack([deltas[i] for i in attacker_ids]),
                oracle=Oracle(
                    params,
                    known,
                    tuple(keys[i].public_key for i in attacker_ids),
                    tuple(max(1, len(parts[i])) for i in attacker_ids),
                    ChainAggregator(
                        app.state.rule_history,
                        originals_first=econ.params.commit_blocks == 0,
                        collusion_permille=econ.params.collusion_permille,
                    ),
                    tuple(stake_votes(econ, keys[i].public_key) for i in attacker_ids),
                ),
                norm_max_units=params.update_norm_max,
                harm=(
                    partial(_harm, config.objective, trainer, model.weights, ds, attacker_part)
                    if config.objective != "progress"
                    else None
                ),
                last_change=None if last_weights is None else model.weights - last_weights,
                evidence=_evidence(app, [keys[i].public_key for i in attacker_ids]),
                econ=econ.params,
            )
            crafted = dict(zip(attacker_ids, adversary.craft(view, attack_rng), strict=True))
            if config.knowledge == "withhold" and not sender.commit_reveal:
                # Single-phase rounds: a withheld update is one never sent.
                now = _with_votes(econ, honest_updates)
                shown = reveals_now(view, now, list(crafted.values()), params.update_norm_max)
                withheld += shown.count(False)
                kept = zip(crafted.items(), shown, strict=True)
                crafted = {i: delta for (i, delta), keep in kept if keep}
            for i, delta in crafted.items():
                result, tx = sender.send(i, model, delta, len(parts[i]), params, None, bits=16)
                if result.accepted:
                    round_txs.append(tx)
                else:
                    refused += 1
        if sender.commit_reveal:
            # Every commitment is in; the honest reveal first, then the attackers, who (under
            # "withhold") choose which commitments to reveal once the honest ones are public.
            sender.open_reveals(rnd)
            for i in sorted(sender.held):
                if i not in attacker:
                    sender.reveal(i)
            owed = [i for i in attacker_ids if i in sender.held]
            shown = [True] * len(owed)
            if adversary is not None and config.knowledge == "withhold" and owed:
                now = _with_votes(app.state.incentives.econ, honest_updates)
                places = [attacker_ids.index(i) for i in owed]
                subset = replace(view, oracle=only(view.oracle, places))
                shown = reveals_now(subset, now, [crafted[i] for i in owed], params.update_norm_max)
            for i, keep in zip(owed, shown, strict=True):
                if keep:
                    sender.reveal(i)
                else:
                    withheld += 1
            sender.held.clear()  # withheld: the chain counts them at the round's close
        if adversary is not None:
            known_past = tuple(honest_updates)
        last_weights = model.weights
        transport.wait_for_round(rnd + 1, blocks_max=8 + sender.phase_blocks(params))
        if committee is not None:
            committee.settle(transport, rnd, model.weights, round_txs)
        flagged = _flagged_clients(transport)
        attacker_keys = {keys[i].public_key for i in attacker}
        flagged_attackers += len(flagged & attacker_keys)
        flagged_honest += len(flagged - attacker_keys)
        final = fetch_model(transport)
        history.append(accuracy(trainer, final.weights, ds.x_test, ds.y_test))
        if progress is not None:
            progress(rnd, history[-1])
    final = fetch_model(transport)
    per_class = _class_accuracy(trainer, final.weights, ds)
    attacker_keys = {keys[i].public_key for i in attacker}
    honest_mix = [
        _label_mix(ds.y_train[parts[i]], ds.n_classes)
        for i in range(config.clients)
        if i not in attacker
    ]
    return EvalResult(
        rule=rule,
        attack=attack,
        accuracy=history[-1] if history else accuracy(trainer, final.weights, ds.x_test, ds.y_test),
        accuracy_by_round=tuple(history),
        backdoor_success=_backdoor_success(trainer, final.weights, ds),
        flagged_attackers=flagged_attackers,
        flagged_honest=flagged_honest,
        model_hash=final.hash.hex(),
        worst_class_accuracy=float(per_class.min()),
        worst_client_accuracy=float(min(float(mix @ per_class) for mix in honest_mix)),
        attackers=n_attackers,
        slashed_attackers=len(app.slashed & attacker_keys),
        slashed_honest=len(app.slashed - attacker_keys),
        refused_attackers=refused,
        withheld_attackers=withheld,
        committee_settled=app.committee_settled,
        reward_honest=_mean(_rewards(app, keys, attacker_keys, of_attackers=False)),
        reward_attackers=_mean(_rewards(app, keys, attacker_keys, of_attackers=True)),
        reward_honest_least=min(_rewards(app, keys, attacker_keys, of_attackers=False), default=0),
    )


def _with_votes(econ: EconState, updates: Sequence[ClientUpdate]) -> tuple[ClientUpdate, ...]:
    """The updates with their clients' stake votes now, as the chain will count them."""
    return tuple(replace(u, votes=stake_votes(econ, u.client)) for u in updates)


def _evidence(app: FLApp, clients: list[bytes]) -> tuple[int, ...]:
    """Each client's slashing evidence as the chain's public state holds it."""
    records = app.state.incentives.econ.clients
    return tuple(records[c].evidence if c in records else 0 for c in clients)


def _rewards(
    app: FLApp, keys: list[PrivateKey], attackers: set[bytes], of_attackers: bool
) -> list[int]:
    """Tokens the chain paid each client of one group (attackers or honest) over the run."""
    group = [k.public_key for k in keys if (k.public_key in attackers) == of_attackers]
    records = app.state.incentives.econ.clients
    return [records[k].rewarded if k in records else 0 for k in group]


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def _econ_params(config: EvalConfig) -> EconParams | None:
    """The economics genesis parameters, or None for the chain without an economics section
    (the open chain, unless a committee or an incentives override needs the section)."""
    wanted = config.committee > 0 or any(is_econ_param(n) for n, _ in config.overrides)
    if config.economics == "staked":
        base = EconParams(client_stake_min=100)
    elif wanted:
        base = OPEN_GENESIS.params
    else:
        return None
    out = replace(base, committee_blocks=COMMITTEE_BLOCKS if config.committee else 0)
    for name, value in config.overrides:
        if is_econ_param(name):
            out = econ_with_value(out, name, value)
    return out


def _validator_keys(committee: int) -> tuple[PrivateKey, ...]:
    if committee == 0:
        return (PrivateKey.from_label("eval-validator"),)
    return tuple(PrivateKey.from_label(f"eval-validator-{v}") for v in range(committee))


def _transport(
    trainer: Trainer,
    rng: np.random.Generator,
    params: Params,
    econ_params: EconParams | None,
    economics: str,
    keys: list[PrivateKey],
    validators: tuple[PrivateKey, ...],
    app: FLApp,
) -> InProcessTransport:
    weights = float_to_units(trainer.init(rng))
    sections: tuple[tuple[str, Value], ...] = ()
    if econ_params is not None:
        staked = economics == "staked"
        econ = EconGenesis(
            allocations=tuple(Allocation(k.public_key, 0, STAKE_INITIAL) for k in keys)
            if staked
            else (),
            reserve=10_000_000 if staked else OPEN_GENESIS.reserve,
            params=econ_params,
        )
        sections = ((SECTION, econ.encode()),)
    genesis = Genesis(
        chain_id=CHAIN_ID,
        validators=tuple(GenesisValidator(v.public_key, 1) for v in validators),
        app_state=build_app_state(trainer.shapes(), weights, params, sections),
    )
    return InProcessTransport(genesis, app)


class _Committee:
    """The evaluation committee's validators, each scoring on its own held-out part."""

    def __init__(self, trainer: Trainer, ds: Dataset, validators: tuple[PrivateKey, ...]) -> None:
        self.trainer = trainer
        self.validators = validators
        self.nonces = [0] * len(validators)
        holdout = np.arange(len(ds.y_test) // 2)
        self.parts = [
            (ds.x_test[idx], ds.y_test[idx]) for idx in np.array_split(holdout, len(validators))
        ]

    def settle(
        self, transport: InProcessTransport, rnd: int, weights: FloatArray, txs: list[bytes]
    ) -> None:
        """Every validator scores the closed round's updates; the round settles after
        COMMITTEE_BLOCKS more blocks on the stake-weighted median of the scores."""
        signed = [decode_tx(raw) for raw in txs]
        for v, key in enumerate(self.validators):
            x, y = self.parts[v]
            pairs: list[Value] = [
                [tx.sender, score_tx(self.trainer, weights, tx, x, y)] for tx in signed
            ]
            body: Value = [rnd, pairs]
            tx = sign_tx(key, CHAIN_ID, "eval_scores", self.nonces[v], body).to_wire()
            result = transport.submit(tx)
            if not result.accepted:
                raise ClientError(f"committee validator {v}: eval_scores refused: {result.reason}")
            self.nonces[v] += 1
        for _ in range(COMMITTEE_BLOCKS):
            transport.produce_block()


def _harm(
    objective: str,
    trainer: Trainer,
    weights: FloatArray,
    ds: Dataset,
    part: npt.NDArray[np.int64] | None,
    aggregate: FloatArray,
) -> float:
    """The attackers' `objective`, on their own clean data, of the model moved by `aggregate`."""
    if part is None:
        return 0.0
    x, y, moved = ds.x_train[part], ds.y_train[part], weights + aggregate
    match objective:
        case "error":
            return float(np.mean(trainer.predict(moved, x) != y))
        case "class_loss":
            return max(log_loss(trainer, moved, x[y == c], y[y == c]) for c in np.unique(y))
        case _:
            return log_loss(trainer, moved, x, y)


def _decoded(tx: bytes) -> ClientUpdate:
    """An update exactly as the chain holds it (model units), from its transaction."""
    signed = decode_tx(tx)
    body = reveal_parts(signed.body)[0] if signed.kind == KIND_REVEAL_UPDATE else signed.body
    update = SubmitUpdate.decode(body)
    delta: IntArray = delta_from_wire(update.delta, update.bits, update.scale_exp, update.count)
    return ClientUpdate(signed.sender, update.samples, delta)


def _proxies(
    keys: list[PrivateKey], attacker: set[int], own: list[FloatArray]
) -> tuple[ClientUpdate, ...]:
    """Before any round has been revealed, attackers stand in their own clean-ish deltas for
    the honest ones (the usual partial-knowledge estimate)."""
    honest_keys = [k.public_key for i, k in enumerate(keys) if i not in attacker]
    return tuple(
        ClientUpdate(key, 1, float_to_units(own[j % len(own)])) for j, key in enumerate(honest_keys)
    )


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


def _class_accuracy(trainer: Trainer, weights: FloatArray, ds: Dataset) -> FloatArray:
    predicted = trainer.predict(weights, ds.x_test)
    out = np.zeros(ds.n_classes)
    for c in range(ds.n_classes):
        mask = ds.y_test == c
        out[c] = float(np.mean(predicted[mask] == c)) if mask.any() else 1.0
    return out


def _label_mix(labels: npt.NDArray[np.int64], n_classes: int) -> FloatArray:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    out: FloatArray = counts / max(1.0, counts.sum())
    return out


def _backdoor_success(trainer: Trainer, weights: np.ndarray, ds: Dataset) -> float:
    mask = ds.y_test != attacks.BACKDOOR_TARGET
    if not mask.any():
        return 0.0
    predicted = trainer.predict(weights, attacks.add_trigger(ds.x_test[mask]))
    return float(np.mean(predicted == attacks.BACKDOOR_TARGET))
