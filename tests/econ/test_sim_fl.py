"""The incentives layer under the consensus simulator: N engines, each with its own FLApp, on
the seeded simulated network (consensus/sim).  One validator equivocates.

Checked on every honest node: the equivocator is slashed exactly once (5%, tombstoned, out of
the set); a proposal switching FedAvg to Multi-Krum passes and the rule changes at its end
height (the simulator's checker already demands identical app hashes per height, and the
parameters are in the app hash); a proposal that misses quorum fails and its deposit is burned
as this genesis configures.  The simulator runs the KV app by default; here its node module is
pointed at FLApp and its proposers' mempools hold the governance transactions.  The
"double_vote" behaviour signs two different votes for one step (DuplicateVoteEvidence).
"""

from dataclasses import replace
from typing import ClassVar

import pytest

import consensus.sim.checker as sim_checker
import consensus.sim.node as sim_node
from consensus.app import CheckTxResult, Genesis, ValidatorUpdate
from consensus.sim.config import SimConfig
from consensus.sim.node import SimNode
from consensus.sim.runner import CHAIN_ID, Simulation, node_keys
from fl.app import FLApp
from fl.economics.genesis import SECTION, Allocation, EconGenesis
from fl.economics.params import EconParams
from fl.errors import RejectedError
from fl.genesis import build_app_state
from fl.params import Params
from fl.txs import SignedTx, decode_tx, sign_tx, verify_tx

pytestmark = pytest.mark.slow

VALIDATORS = 4
KEYS = node_keys(VALIDATORS)
EQUIVOCATOR = KEYS[-1].public_key  # the simulator makes the highest index byzantine
ECON = EconGenesis(
    allocations=tuple(Allocation(k.public_key, 10_000, 1_000) for k in KEYS),
    reserve=1_000_000,
    # Virtual chain time: a vote of 5 s spans many simulated blocks.
    params=EconParams(gov_voting_period_ms=5_000, gov_burn_no_quorum=1),
)
APP_STATE = build_app_state(((1,),), None, Params(rule="fedavg"), ((SECTION, ECON.encode()),))


class SimFLApp(FLApp):
    """FLApp with this test's genesis app state (the simulator's genesis carries none)."""

    def init_chain(self, genesis: Genesis) -> tuple[bytes, tuple[ValidatorUpdate, ...]]:
        return super().init_chain(replace(genesis, app_state=APP_STATE))


def governance_txs() -> list[SignedTx]:
    """Proposal 1: FedAvg -> Multi-Krum, voted yes by the three honest validators.
    Proposal 2: a parameter change only its proposer votes for (1/4 of the stake < 33.4%)."""
    v0, v1, v2 = KEYS[:3]
    return [
        sign_tx(v0, CHAIN_ID, "gov_propose", 0, [["param", "rule", "multi_krum"], 1_000]),
        sign_tx(v0, CHAIN_ID, "gov_propose", 1, [["param", "trim_permille", 100], 1_000]),
        sign_tx(v0, CHAIN_ID, "gov_vote", 2, [1, "yes"]),
        sign_tx(v0, CHAIN_ID, "gov_vote", 3, [2, "yes"]),
        sign_tx(v1, CHAIN_ID, "gov_vote", 0, [1, "yes"]),
        sign_tx(v2, CHAIN_ID, "gov_vote", 0, [1, "yes"]),
    ]


class StatelessTxCheck:
    """What the checker asks of every committed tx: it decodes and its signature verifies
    (the FL app's stateless admission; stateful failures are per-tx results, not invalidity)."""

    def check_tx(self, tx: bytes) -> CheckTxResult:
        try:
            verify_tx(decode_tx(tx), CHAIN_ID)
        except RejectedError as exc:
            return CheckTxResult(code=1, reason=str(exc))
        return CheckTxResult()


class GovSimulation(Simulation):
    txs: ClassVar[list[bytes]] = [tx.to_wire() for tx in governance_txs()]

    def txs_for(self, node: SimNode, height: int, round_: int) -> list[bytes]:
        # Every proposer offers every transaction; prepare_proposal keeps those whose nonce is
        # next, so each runs once, proposals before the votes that name them.
        return list(self.txs)


@pytest.fixture
def fl_sim(monkeypatch: pytest.MonkeyPatch) -> type[GovSimulation]:
    monkeypatch.setattr(sim_node, "KVApp", SimFLApp)
    monkeypatch.setattr(sim_checker, "KVApp", StatelessTxCheck)
    return GovSimulation


def rule_switch_height(node: SimNode) -> int:
    """Replay the node's stored blocks on a fresh app; the height after which the rule changed."""
    app = SimFLApp()
    app.init_chain(node.genesis)
    for stored in node.stored:
        app.finalize_block(stored.block.txs, stored.info)
        app.commit()
        if app.state.params.rule == "multi_krum":
            return stored.block.header.height
    return -1


@pytest.mark.parametrize(("seed", "faults"), [(1, False), (2, False), (3, True), (5, True)])
def test_equivocator_slashed_once_and_governance_executes_everywhere(
    fl_sim: type[GovSimulation], seed: int, faults: bool
) -> None:
    # With faults: drops, duplicates, delays, partitions and crashes until the heal.
    config = SimConfig(
        validators=VALIDATORS,
        byzantine=("double_vote",),
        faults=faults,
        duration_ms=90_000,
        liveness_ms=30_000,
    )
    sim = fl_sim(config, seed)
    result = sim.run()
    assert result.ok, f"seed {seed}: {result.violations}"
    assert result.evidence_committed == 1, f"seed {seed}"
    honest = [n for n in sim.nodes if n.key.public_key != EQUIVOCATOR]
    switch_heights = set()
    for node in honest:
        app = node.app
        assert isinstance(app, FLApp)
        econ = app.state.incentives.econ
        record = econ.validators[EQUIVOCATOR]
        assert record.tombstoned, f"seed {seed} node {node.index}"
        assert record.slashed == 50, f"seed {seed} node {node.index}: slashed {record.slashed}"
        assert econ.ledger.stake(EQUIVOCATOR) == 950
        assert EQUIVOCATOR not in econ.emitted_power
        gov = app.state.incentives.gov
        passed, missed = gov.proposals[1], gov.proposals[2]
        assert passed.status == "passed", f"seed {seed} node {node.index}: {passed.note}"
        assert missed.status == "no_quorum"
        assert app.state.params.rule == "multi_krum"
        assert app.state.params.trim_permille != 100
        # Slashed 50 once + proposal 2's deposit burned (gov_burn_no_quorum = 1); p1 refunded.
        assert econ.ledger.burned == 50 + 1_000
        assert econ.ledger.escrow == 0
        switch = rule_switch_height(node)
        assert passed.note == f"executed at height {switch}"
        # Tallied at the end of the first block whose chain time reached the voting end.
        times = {d.height: d.info.time_ms for d in node.stored}
        assert times[switch - 1] < passed.voting_end_ms <= times[switch]
        switch_heights.add(switch)
    assert len(switch_heights) == 1
    # Out of the set two heights after the evidence: the equivocator signs no later commit.
    last = honest[0].stored[-1].info.last_commit
    assert all(v.public_key != EQUIVOCATOR for v in last)
