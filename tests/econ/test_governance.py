"""Governance: proposals, stake-weighted tallies, execution at the end height, deposits, and
bad input rejected with a reason and no change of state."""

import pytest

from consensus.codec import Value, decode, encode
from fl.economics import params as econ_params
from fl.economics.layer import Incentives
from fl.errors import RejectedError
from fl.params import GOVERNABLE as FL_GOVERNABLE
from fl.params import Params

from .helpers import ALICE, BLOCK_MS, BOB, CAROL, VALS, fast, key, make

FEDAVG = Params(rule="fedavg")


def propose(inc: Incentives, sender: bytes, content: Value, deposit: int, height: int) -> int:
    inc.execute(
        FEDAVG, "gov_propose", sender, [content, deposit], height, height * BLOCK_MS, apply=True
    )
    return inc.gov.next_id - 1


def vote(inc: Incentives, voter: bytes, pid: int, option: str, height: int) -> None:
    inc.execute(FEDAVG, "gov_vote", voter, [pid, option], height, height * BLOCK_MS, apply=True)


def finish(inc: Incentives, params: Params, upto: int) -> Params:
    for h in range(1, upto + 1):
        params, _, _ = inc.end_block(params, h, h * BLOCK_MS)
    return params


def test_param_names_are_disjoint() -> None:
    fl_names = {s.name for s in FL_GOVERNABLE}
    assert not fl_names & {s.name for s in econ_params.GOVERNABLE}


def test_switch_to_multi_krum_passes_and_takes_effect_at_the_end_height() -> None:
    inc = make()
    balance = inc.econ.ledger.balance(ALICE)
    pid = propose(inc, ALICE, ["param", "rule", "multi_krum"], 1_000, height=3)
    for v in VALS[:3]:  # 30_000 of 43_000 bonded
        vote(inc, v, pid, "yes", 4)
    vote(inc, BOB, pid, "no", 4)
    params = FEDAVG
    for h in range(1, 23):
        params, _, _ = inc.end_block(params, h, h * BLOCK_MS)
        assert params.rule == ("fedavg" if h < 23 else "multi_krum")
    params, _, events = inc.end_block(params, 23, 23 * BLOCK_MS)
    assert params.rule == "multi_krum"
    proposal = inc.gov.proposals[pid]
    assert proposal.status == "passed"
    assert (proposal.tally.yes, proposal.tally.no, proposal.tally.total_bonded) == (
        30_000,
        1_000,
        43_000,
    )
    assert inc.econ.ledger.balance(ALICE) == balance  # deposit refunded
    assert any(e.kind == "gov_proposal_closed" for e in events)


def test_econ_parameter_change() -> None:
    inc = make()
    pid = propose(inc, ALICE, ["param", "double_sign_slash_permille", 100], 1_000, 1)
    for v in VALS:
        vote(inc, v, pid, "yes", 2)
    finish(inc, FEDAVG, 21)
    assert inc.econ.params.double_sign_slash_permille == 100


@pytest.mark.parametrize(("burn", "expected_burned"), [(0, 0), (1, 1_000)])
def test_missing_quorum_fails_and_handles_the_deposit_as_configured(
    burn: int, expected_burned: int
) -> None:
    inc = make(fast(gov_burn_no_quorum=burn))
    balance = inc.econ.ledger.balance(ALICE)
    pid = propose(inc, ALICE, ["param", "rule", "multi_krum"], 1_000, 1)
    vote(inc, VALS[0], pid, "yes", 2)  # 10_000 of 43_000 < 33.4%
    params = finish(inc, FEDAVG, 21)
    assert inc.gov.proposals[pid].status == "no_quorum"
    assert params.rule == "fedavg"
    assert inc.econ.ledger.burned == expected_burned
    assert inc.econ.ledger.balance(ALICE) == balance - expected_burned
    assert inc.econ.ledger.escrow == 0


def test_veto_burns_and_majority_no_refunds() -> None:
    inc = make()
    vetoed = propose(inc, ALICE, ["text", "t", "d"], 1_000, 1)
    rejected = propose(inc, BOB, ["text", "t2", "d2"], 1_000, 1)
    vote(inc, VALS[0], vetoed, "yes", 2)
    vote(inc, VALS[1], vetoed, "yes", 2)
    vote(inc, VALS[2], vetoed, "veto", 2)  # 10k / 30k = 33.3% ... not above 33.4%
    vote(inc, VALS[3], vetoed, "veto", 2)  # 20k / 40k = 50% > 33.4%
    vote(inc, VALS[0], rejected, "no", 2)
    vote(inc, VALS[1], rejected, "no", 2)
    vote(inc, VALS[2], rejected, "yes", 2)
    vote(inc, VALS[3], rejected, "abstain", 2)
    finish(inc, FEDAVG, 21)
    assert inc.gov.proposals[vetoed].status == "vetoed"
    assert inc.gov.proposals[rejected].status == "rejected"
    assert inc.econ.ledger.burned == 1_000
    assert inc.econ.ledger.balance(BOB) == 10_000


def test_validator_admission_and_removal_and_client_ban() -> None:
    inc = make()
    newcomer = key("newcomer")
    inc.econ.ledger.bonded[newcomer] = 5_000
    inc.econ.ledger.supply += 5_000
    admit = propose(inc, ALICE, ["validator_admit", newcomer], 1_000, 1)
    remove = propose(inc, ALICE, ["validator_remove", VALS[3]], 1_000, 1)
    ban = propose(inc, ALICE, ["client_ban", CAROL], 1_000, 1)
    for pid in (admit, remove, ban):
        for v in VALS:
            vote(inc, v, pid, "yes", 2)
    updates: list[tuple[bytes, int]] = []
    params = FEDAVG
    for h in range(1, 22):
        params, ups, _ = inc.end_block(params, h, h * BLOCK_MS)
        updates += ups
    assert sorted(updates) == sorted([(newcomer, 5), (VALS[3], 0)])
    with pytest.raises(RejectedError, match="banned"):
        inc.check_submit(CAROL, 0)
    unban = propose(inc, ALICE, ["client_unban", CAROL], 1_000, 22)
    for v in VALS[:3]:
        vote(inc, v, unban, "yes", 23)
    for h in range(22, 43):
        params, _, _ = inc.end_block(params, h, h * BLOCK_MS)
    inc.check_submit(CAROL, 0)


BAD = [
    ("gov_vote", CAROL, [1, "yes"], "no bonded stake"),
    ("gov_vote", ALICE, [1, "yes"], "voting on proposal 1 ended"),  # at height 30 > 21
    ("gov_vote", ALICE, [1, "maybe"], "not one of"),
    ("gov_vote", ALICE, [99, "yes"], "no proposal 99"),
    ("gov_propose", ALICE, [["text", "t", "d"], 0], "below the minimum"),
    ("gov_propose", ALICE, [["text", "t", "d"], 999], "below the minimum"),
    ("gov_propose", ALICE, [["param", "learning_rate", 5], 1_000], "unknown parameter"),
    ("gov_propose", ALICE, [["param", "rule", "sgd"], 1_000], "is not one of"),
    ("gov_propose", ALICE, [["param", "trim_permille", 700], 1_000], "not an integer in"),
    ("gov_propose", ALICE, [["param", "gov_quorum_permille", "x"], 1_000], "not an integer in"),
    ("gov_propose", ALICE, [["param", "updates_min", 1_000], 1_000], "must not exceed"),
    ("gov_propose", ALICE, [["text", "t", "d"], 10**9], "exceeds balance"),
    ("gov_propose", ALICE, [["bogus"], 1_000], "unknown proposal kind"),
    ("gov_propose", ALICE, [["validator_remove", key("nobody")], 1_000], "no admitted"),
    ("gov_propose", ALICE, "garbage", "malformed gov_propose"),
    ("transfer", ALICE, [BOB, 10**9], "exceeds balance"),
    ("transfer", ALICE, [b"short", 1], "malformed transfer"),
    ("bond", ALICE, [0], "malformed bond"),
    ("unbond", CAROL, [1], "exceeds bonded"),
    ("unjail", ALICE, [], "not a validator"),
    ("unjail", VALS[0], [], "not jailed"),
]


@pytest.mark.parametrize(("kind", "sender", "body", "reason"), BAD)
def test_bad_input_is_rejected_with_a_reason_and_state_unchanged(
    kind: str, sender: bytes, body: Value, reason: str
) -> None:
    inc = make()
    inc.econ.ledger.bonded.pop(CAROL)
    inc.econ.ledger.balances[CAROL] += 1_000
    propose(inc, ALICE, ["text", "t", "d"], 1_000, 1)
    before = encode(inc.encode())
    height = 30 if "ended" in reason else 5
    for apply in (False, True):
        with pytest.raises(RejectedError, match=reason):
            inc.execute(FEDAVG, kind, sender, body, height, height * BLOCK_MS, apply=apply)
        assert encode(inc.encode()) == before


def test_too_many_active_proposals() -> None:
    inc = make(fast(gov_active_max=2))
    propose(inc, ALICE, ["text", "a", ""], 1_000, 1)
    propose(inc, ALICE, ["text", "b", ""], 1_000, 1)
    with pytest.raises(RejectedError, match="already in their voting period"):
        propose(inc, ALICE, ["text", "c", ""], 1_000, 1)


def test_history_is_queryable_and_state_round_trips() -> None:
    inc = make()
    pid = propose(inc, ALICE, ["param", "rule", "median"], 1_000, 1)
    vote(inc, VALS[0], pid, "yes", 2)
    finish(inc, FEDAVG, 21)
    summaries = inc.query(["gov", "proposals"])
    assert isinstance(summaries, list)
    assert summaries[0][3] == "no_quorum"
    full = inc.query(["gov", "proposal", str(pid)])
    assert full == inc.gov.proposals[pid].encode()
    with pytest.raises(RejectedError):
        inc.query(["gov", "proposal", "7"])
    raw = encode(inc.encode())
    assert encode(Incentives.decode(decode(raw)).encode()) == raw
    supply = inc.query(["econ", "supply"])
    assert isinstance(supply, list)
    assert supply[0] == sum(supply[1:])


def test_client_registry_admission_and_removal_by_governance() -> None:
    inc = make(fast(client_registry=1))
    with pytest.raises(RejectedError, match="registry"):
        inc.check_submit(CAROL, 0)
    with pytest.raises(RejectedError, match="not admitted"):
        propose(inc, ALICE, ["client_remove", CAROL], 1_000, 1)
    admit = propose(inc, ALICE, ["client_admit", CAROL], 1_000, 1)
    for v in VALS:
        vote(inc, v, admit, "yes", 2)
    params = finish(inc, FEDAVG, 21)
    inc.check_submit(CAROL, 0)
    with pytest.raises(RejectedError, match="already admitted"):
        propose(inc, ALICE, ["client_admit", CAROL], 1_000, 22)
    remove = propose(inc, ALICE, ["client_remove", CAROL], 1_000, 22)
    for v in VALS:
        vote(inc, v, remove, "yes", 23)
    for h in range(22, 43):
        params, _, _ = inc.end_block(params, h, h * BLOCK_MS)
    with pytest.raises(RejectedError, match="registry"):
        inc.check_submit(CAROL, 0)
