"""The simulator campaign CI runs, and the checker's self-tests (mutants, twins beyond f).

Every failure message names its seed; `fedchain sim ... --seed S` replays it exactly.
"""

from dataclasses import replace

import pytest

from consensus.crypto import PrivateKey, verify
from consensus.engine.config import MUTANT_DESCRIPTIONS
from consensus.sim.byzantine import ByzantineContext, ByzantineMemory, sign_vote
from consensus.sim.checker import SAFETY
from consensus.sim.config import BEHAVIOURS, SimConfig
from consensus.sim.node import SimNode
from consensus.sim.runner import (
    CHAIN_ID,
    CachingVerifier,
    RunResult,
    Simulation,
    node_keys,
    run_seed,
)
from consensus.sim.shapes import HUNTS, campaign_config, hunt_config
from consensus.sim.twins import canonical_scenarios, run_scenario, two_twins_config
from consensus.types import NIL, PREVOTE, Block, Commit, CommitSig, Proposal, Vote

CI_SEEDS = 200
CI_DURATION_MS = 30_000
MUTANT_SEEDS_MAX = 200


def _describe(result: RunResult, config: SimConfig) -> str:
    return f"seed {result.seed} ({config}): " + "; ".join(map(str, result.violations))


@pytest.mark.slow
def test_campaign_200_seeds_over_every_shape() -> None:
    """Every campaign shape (n in {4, 7, 10}, every behaviour, unequal powers, validator
    changes, crash points, twins, a 12-round height, slow messages after the heal)."""
    failures = []
    heights = 0
    evidence = 0
    rounds_max = 0
    behaviours: set[str] = set()
    for seed in range(CI_SEEDS):
        config = campaign_config(seed, CI_DURATION_MS)
        behaviours.update(config.byzantine)
        result = run_seed(config, seed)
        heights += result.heights_committed
        evidence += result.evidence_committed
        rounds_max = max(rounds_max, result.rounds_max)
        if result.violations:
            failures.append(_describe(result, config))
    assert failures == []
    # Not vacuous: the runs made progress, went through long heights, punished equivocation
    # and met every behaviour.
    assert heights > CI_SEEDS * 15
    assert rounds_max >= 10
    assert evidence > 0
    assert behaviours == set(BEHAVIOURS)


def test_seed_replays_exactly() -> None:
    config = SimConfig(byzantine=("double_vote",), duration_ms=60_000, liveness_ms=20_000)
    a, b = run_seed(config, 7), run_seed(config, 7)
    assert (a.events, a.heights_committed, a.max_height, a.rounds_max) == (
        b.events,
        b.heights_committed,
        b.max_height,
        b.rounds_max,
    )
    assert a.plan == b.plan
    assert run_seed(config, 8).events != a.events


def _hunt(mutant: str) -> tuple[str, int] | None:
    """(property, seed) of the first run of the mutant's shape that its property catches."""
    expected = HUNTS[mutant][1]
    wanted = set(SAFETY) if expected in SAFETY else {expected}
    for seed in range(MUTANT_SEEDS_MAX):
        result = run_seed(hunt_config(mutant, seed), seed)
        kinds = [v.kind for v in result.violations if v.kind in wanted]
        if kinds:
            return kinds[0], seed
    return None


def test_every_mutant_has_a_hunt() -> None:
    assert set(HUNTS) == set(MUTANT_DESCRIPTIONS)


@pytest.mark.parametrize("mutant", list(MUTANT_DESCRIPTIONS))
def test_mutant_is_caught_within_200_seeds_by_its_property(mutant: str) -> None:
    """A safety mutant must break agreement, validity or double-sign (not only a rule-shaped
    diagnostic such as locking or the commit certificate); the others liveness or pace."""
    caught = _hunt(mutant)
    assert caught is not None, f"mutant {mutant} survived {MUTANT_SEEDS_MAX} seeds"
    kind, _ = caught
    expected = HUNTS[mutant][1]
    assert kind in SAFETY if expected in SAFETY else kind == expected


@pytest.mark.parametrize(
    "mutant",
    [
        "nolock",
        "trust_pol_round",
        "quorum2f",
        "noguard",
        "decide_current_round_only",
        "valid_only_on_lock",
    ],
)
def test_hunt_shapes_are_safe_and_live_with_the_correct_engine(mutant: str) -> None:
    """The shapes that break agreement or liveness with a mutant stay safe and live without
    it (scripts/sim_campaign.py runs 300 seeds of the liveness ones; see docs/sim_mutants.json)."""
    for seed in range(12):
        config = replace(hunt_config(mutant, seed), mutant="")
        result = run_seed(config, seed)
        assert result.violations == [], _describe(result, config)


def _late_decisions(seed: int) -> tuple[Simulation, RunResult, list[tuple[int, int]]]:
    """Run decide_current_round_only's shape with the correct engine; (commit round, round the
    node was in) of every honest decision taken in a later round than the commit's."""
    config = replace(hunt_config("decide_current_round_only", seed), mutant="")
    sim = Simulation(config, seed)
    late: list[tuple[int, int]] = []
    record = sim.checker.on_commit

    def on_commit(node: SimNode, block: Block, commit: Commit, app_hash: bytes) -> None:
        if node.index in sim.checker.honest and commit.round < node.state.round:
            late.append((commit.round, node.state.round))
        record(node, block, commit, app_hash)

    sim.checker.on_commit = on_commit  # type: ignore[method-assign]
    return sim, sim.run(), late


def test_catch_up_makes_a_node_decide_on_an_earlier_rounds_precommits() -> None:
    """Not vacuous: in decide_current_round_only's shape an honest node that had moved on to a
    later round decides on the precommits of the round that decided (L49 in any round), and
    no block arrives by block sync."""
    for seed in range(20):
        sim, result, late = _late_decisions(seed)
        assert result.violations == [], f"seed {seed}: {result.violations}"
        assert sim.blocks_synced == 0
        if late:
            return
    pytest.fail("no node decided on an earlier round's precommits in 20 seeds")


def _unlocked_reproposals(seed: int) -> tuple[RunResult, list[tuple[int, int, int]]]:
    """Run valid_only_on_lock's shape with the correct engine; (height, round, POL round) of
    every honest proposal re-proposing a valid value its proposer never locked."""
    config = replace(hunt_config("valid_only_on_lock", seed), mutant="")
    sim = Simulation(config, seed)
    found: list[tuple[int, int, int]] = []
    record = sim.checker.on_signed

    def on_signed(node: SimNode, msg: Proposal | Vote) -> None:
        if (
            node.index in sim.checker.honest
            and isinstance(msg, Proposal)
            and msg.pol_round >= 0
            and node.state.locked_round < msg.pol_round
        ):
            found.append((msg.height, msg.round, msg.pol_round))
        record(node, msg)

    sim.checker.on_signed = on_signed  # type: ignore[method-assign]
    return sim.run(), found


def test_hide_pol_makes_honest_proposers_re_propose_a_valid_value_they_never_locked() -> None:
    """Not vacuous: in valid_only_on_lock's shape an honest proposer re-proposes a value with
    its POL round although it never locked it (validValue set at L42-L43 without L38), and
    the run stays safe and live."""
    for seed in range(20):
        result, found = _unlocked_reproposals(seed)
        assert result.violations == [], f"seed {seed}: {result.violations}"
        if found:
            return
    pytest.fail("no honest proposer re-proposed an unlocked valid value in 20 seeds")


def test_resending_the_same_signed_bytes_is_not_a_double_sign() -> None:
    sim = Simulation(SimConfig(duration_ms=20_000, liveness_ms=10_000, faults=False), 0)
    key = node_keys(4)[0]
    ctx = ByzantineContext(key, CHAIN_ID, 4, 0, sim.rng, 1, 0, ByzantineMemory())
    vote = sign_vote(ctx, PREVOTE, 1, 0, b"\x01" * 32)
    sim.checker.on_wire(vote)
    sim.checker.on_wire(vote)
    assert sim.checker.violations == []
    sim.checker.on_wire(sign_vote(ctx, PREVOTE, 1, 0, NIL))
    assert [v.kind for v in sim.checker.violations] == ["double_sign"]


def test_validator_changes_go_through_the_app() -> None:
    """Powers change (and an honest validator may leave and come back) at H+2 through `val:`
    txs, keeping the faulty keys under 1/3; the run stays safe and live."""
    config = SimConfig(
        validators=7,
        byzantine=("equivocate", "silent"),
        powers=(3, 3, 2, 2, 2, 1, 1),
        validator_changes=True,
        duration_ms=60_000,
        liveness_ms=20_000,
    )
    schedule = config.validator_schedule()
    assert len(schedule) > 20
    sim = Simulation(config, 1)
    result = sim.run()
    assert result.violations == []
    powers = {v.public_key: v.power for v in sim.nodes[0].state.chain.validators.validators}
    genesis = {k.public_key: config.power_of(i) for i, k in enumerate(node_keys(7))}
    assert powers != genesis


def test_two_twins_among_four_validators_are_reported() -> None:
    result = run_seed(two_twins_config(), 0)
    assert any(v.kind == "agreement" for v in result.violations)


@pytest.mark.slow
def test_twins_enumeration_one_twin_of_four() -> None:
    """All canonical partition scenarios over 3 rounds, for every leader placement (which
    validator is twinned), must stay safe and live.  See consensus/sim/twins.py for the
    pruning; the 4-round enumeration runs in scripts/sim_campaign.py."""
    failures = []
    scenarios = list(canonical_scenarios(3))
    assert len(scenarios) == 1 + (9**3 - 1) // 2
    for offset in range(4):
        for scenario in scenarios:
            result = run_scenario(scenario, offset)
            if result.violations:
                failures.append(
                    f"twin of validator {offset}, scenario {scenario}: {result.violations}"
                )
    assert failures == []


def test_twins_enumeration_catches_the_quorum2f_mutant() -> None:
    """The enumeration is not vacuous: with 2f quorums, some scenario breaks agreement.  (It
    cannot catch `nolock`: symmetric per-round splits never leave a lock without a decision;
    the lossy-link campaign catches that one.)"""
    caught = next(
        (s for s in canonical_scenarios(3) if run_scenario(s, 0, mutant="quorum2f").violations),
        None,
    )
    assert caught is not None


def test_verification_cache_never_accepts_a_forged_signature() -> None:
    key = PrivateKey.from_label("k")
    cache = CachingVerifier()
    message = b"hello"
    good = key.sign(message)
    assert cache(key.public_key, message, good)
    assert cache(key.public_key, message, good)  # cached
    forged = bytes([good[0] ^ 1]) + good[1:]
    assert not cache(key.public_key, message, forged)
    assert not verify(key.public_key, message, forged)
    assert cache.misses == 2


def test_checker_catches_a_forged_commit_signature() -> None:
    sim = Simulation(SimConfig(duration_ms=20_000, liveness_ms=10_000, faults=False), 0)
    original = sim.checker.on_commit

    def forge(node, block, commit, app_hash):  # type: ignore[no-untyped-def]
        bad = tuple(CommitSig(s.validator, bytes(64)) for s in commit.signatures)
        original(node, block, replace(commit, signatures=bad), app_hash)

    sim.checker.on_commit = forge  # type: ignore[method-assign]
    result = sim.run()
    assert any(v.kind == "certificate" and "bad signature" in v.detail for v in result.violations)


def test_clean_run_commits_every_block_interval() -> None:
    result = run_seed(SimConfig(faults=False, duration_ms=60_000, liveness_ms=20_000), 3)
    assert result.violations == []
    assert result.heights_committed >= 40
    assert result.rounds_max == 0
