"""The per-peer consensus message budget (node/msgbudget.py) and the fair inbox's purge.

The process-level checks (a flooding validator banned within 10 abusive messages, an honest
chain unaffected) are in tests/adversarial/test_round_flood.py.
"""

from consensus.types import PRECOMMIT, PREVOTE, DuplicateVoteEvidence, Vote
from node.fairinbox import FairInbox
from node.msgbudget import BudgetConfig, Kind, MsgBudget, Verdict, View, honest_per_s

N = 4
PEER = "peer"


def vote(
    height: int, round_: int, validator: int = 1, block: int = 7, type_: int = PREVOTE
) -> Vote:
    return Vote(type_, height, round_, bytes([block]) * 32, bytes([validator]) * 32, b"s" * 64)


def relay_second(height: int, round_: int) -> list[Vote]:
    """The most votes a correct validator sends in one second (consensus/driver/relay.py):
    others' votes of five rounds, both types, conflicting ones too, the previous height's
    commit, and its own three messages per round of the height."""
    out = []
    for r in range(max(0, round_ - 4), round_ + 1):
        for type_ in (PREVOTE, PRECOMMIT):
            for v in range(N):
                out += [vote(height, r, v, 1, type_), vote(height, r, v, 2, type_)]
    out += [vote(height - 1, 0, v, 3, PRECOMMIT) for v in range(N)]
    out += [vote(height, r, 9, 4) for r in range(round_ + 1) for _ in range(3)]
    return out


def test_a_correct_validators_worst_second_is_accepted_every_second_without_a_strike() -> None:
    budget = MsgBudget(BudgetConfig())
    view = View(10, 3, N)
    for second in range(5):
        for message in relay_second(10, 3):
            decision = budget.admit(PEER, message, view, True, 1_000 * second)
            assert decision.verdict is not Verdict.ABUSE, (second, decision)
    assert budget.strikes(PEER) == 0


def test_a_fast_chain_never_runs_a_peer_dry() -> None:
    # 1,000 heights within one millisecond of our clock: the per-step credit alone carries a
    # correct peer's prevote, precommit and proposal of every height.
    budget = MsgBudget(BudgetConfig())
    for height in range(1, 1_001):
        view = View(height, 0, N)
        for type_ in (PREVOTE, PRECOMMIT):
            decision = budget.admit(PEER, vote(height, 0, type_=type_), view, True, 0)
            assert decision.verdict is Verdict.ACCEPT, (height, decision)


def test_a_flood_is_banned_after_its_budget_and_exactly_the_abusive_maximum() -> None:
    cfg = BudgetConfig(abusive_messages_max=10)
    budget = MsgBudget(cfg)
    view = View(10, 0, N)
    capacity = budget.capacity(Kind.VOTE, view, True)
    assert capacity == 2 * honest_per_s(Kind.VOTE, view, True) + 32
    verdicts = [
        budget.admit(PEER, vote(10, 1 + i % 60, block=i % 256), view, True, 0)
        for i in range(capacity + cfg.abusive_messages_max)
    ]
    assert [d.verdict for d in verdicts[:capacity]] == [Verdict.ACCEPT] * capacity
    assert [d.strikes for d in verdicts[capacity:]] == list(range(1, 11))


def test_what_no_correct_peer_sends_is_a_strike_at_once() -> None:
    budget = MsgBudget(BudgetConfig(peer_round_max=10_000, future_heights_max=100))
    view = View(10, 0, N)
    far_round = budget.admit(PEER, vote(10, 10_001), view, True, 0)
    far_height = budget.admit(PEER, vote(111, 0), view, True, 0)
    assert (far_round.verdict, far_round.strikes) == (Verdict.ABUSE, 1)
    assert (far_height.verdict, far_height.strikes) == (Verdict.ABUSE, 2)
    assert "peer_round_max" in far_round.reason


def test_a_lagging_peers_relays_and_far_rounds_are_dropped_without_a_strike() -> None:
    budget = MsgBudget(BudgetConfig(rounds_ahead_max=64))
    view = View(10, 2, N)
    cases = {
        "previous height's commit": vote(9, 0, type_=PRECOMMIT),
        "beyond rounds_ahead_max": vote(10, 67),
        "height beyond the future buffer": vote(13, 0),
    }
    for name, message in cases.items():
        decision = budget.admit(PEER, message, view, True, 0)
        assert (decision.verdict, decision.kind) == (Verdict.IGNORE, Kind.OUT_OF_WINDOW), name
    near = {"edge of the window": vote(10, 66), "next height": vote(11, 64)}
    for name, message in near.items():
        assert budget.admit(PEER, message, view, True, 0).verdict is Verdict.ACCEPT, name
    # ... but they count: a flood of them runs out of budget and collects strikes.
    for _ in range(budget.capacity(Kind.OUT_OF_WINDOW, view, True)):
        budget.admit(PEER, vote(10, 5_000), view, True, 0)
    assert budget.admit(PEER, vote(10, 5_000), view, True, 0).verdict is Verdict.ABUSE


def test_evidence_beyond_its_budget_is_dropped_but_never_a_strike() -> None:
    # Honest peers relay their whole evidence pool every stalled second (it may hold many of a
    # byzantine validator's equivocations): that must never get them banned.
    budget = MsgBudget(BudgetConfig())
    view = View(10, 0, N)
    evidence = DuplicateVoteEvidence(vote(10, 0, block=1), vote(10, 0, block=2))
    verdicts = {budget.admit(PEER, evidence, view, True, 0).verdict for _ in range(1_000)}
    assert verdicts == {Verdict.ACCEPT, Verdict.IGNORE}
    assert budget.strikes(PEER) == 0


def test_strikes_heal_with_time_and_are_per_peer() -> None:
    budget = MsgBudget(BudgetConfig(strike_decay_ms=10_000))
    view = View(10, 0, N)
    for _ in range(3):
        budget.admit(PEER, vote(10, 20_000), view, True, 0)
    assert budget.strikes(PEER) == 3
    assert budget.admit("other", vote(10, 20_000), view, True, 0).strikes == 1
    assert budget.admit(PEER, vote(10, 20_000), view, True, 25_000).strikes == 2
    budget.forget(PEER)
    assert budget.strikes(PEER) == 0


def test_a_non_validator_gets_no_budget_for_proposals_of_its_own() -> None:
    budget = MsgBudget(BudgetConfig())
    view = View(10, 0, N)
    assert honest_per_s(Kind.PROPOSAL, view, False) == 0
    assert budget.capacity(Kind.PROPOSAL, view, False) < budget.capacity(Kind.PROPOSAL, view, True)
    assert budget.capacity(Kind.VOTE, view, False) < budget.capacity(Kind.VOTE, view, True)


def test_a_purged_peer_loses_its_queue_and_its_turn() -> None:
    inbox: FairInbox[str, str] = FairInbox(per_peer_max=10)
    for i in range(5):
        inbox.put("flooder", f"f{i}")
    inbox.put("honest", "h0")
    inbox.put("honest", "h1")
    assert inbox.purge("flooder") == 5
    assert inbox.purge("flooder") == 0
    assert len(inbox) == 2
    assert [inbox.pop(), inbox.pop(), inbox.pop()] == ["h0", "h1", None]
    assert inbox.dropped == 5
