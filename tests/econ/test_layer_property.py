"""Property: random interleavings of signed-off transactions (transfer, bond, unbond, unjail,
proposals, votes), block hooks (rewards, downtime, double-sign evidence, unbonding maturity,
governance tallies) and round settlements (rewards and slashes) keep the supply invariant,
never leave a negative or zero entry, and leave the state untouched whenever an operation is
rejected.  `end_block` itself raises if the invariant breaks."""

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import Value, encode
from fl.economics.clients import RoundVerdict, settle_round
from fl.errors import RejectedError
from fl.params import Params

from .helpers import ALICE, BLOCK_MS, BOB, CAROL, VALS, block, fast, make

ACTORS = [ALICE, BOB, CAROL, *VALS]

step = st.one_of(
    st.tuples(
        st.just("transfer"),
        st.sampled_from(ACTORS),
        st.sampled_from(ACTORS),
        st.integers(-5, 20_000),
    ),
    st.tuples(st.just("bond"), st.sampled_from(ACTORS), st.just(b""), st.integers(-5, 20_000)),
    st.tuples(st.just("unbond"), st.sampled_from(ACTORS), st.just(b""), st.integers(-5, 20_000)),
    st.tuples(st.just("unjail"), st.sampled_from(VALS), st.just(b""), st.just(0)),
    st.tuples(st.just("propose"), st.sampled_from(ACTORS), st.just(b""), st.integers(0, 3_000)),
    st.tuples(st.just("vote"), st.sampled_from(ACTORS), st.just(b""), st.integers(0, 3)),
    st.tuples(
        st.just("settle"), st.sampled_from(ACTORS), st.sampled_from(ACTORS), st.integers(0, 1000)
    ),
    st.tuples(st.just("block"), st.sampled_from(VALS), st.sampled_from(VALS), st.integers(0, 3)),
)
# Blocks drive tallies, maturities and downtime: make them as common as all the rest together.
step = st.one_of(step, st.tuples(st.just("block"), st.sampled_from(VALS), st.just(b""), st.just(0)))


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=20, max_size=80))
def test_random_operations_keep_every_invariant(steps: list[tuple[str, bytes, bytes, int]]) -> None:
    inc = make(
        fast(
            gov_voting_period_ms=3 * BLOCK_MS,
            unbonding_period_ms=2 * BLOCK_MS,
            downtime_window_blocks=4,
        )
    )
    params = Params()
    height = 1
    for kind, a, b, n in steps:
        before = encode(inc.encode())
        try:
            match kind:
                case "transfer":
                    inc.execute(
                        params, "transfer", a, [b, n], height, height * BLOCK_MS, apply=True
                    )
                case "bond" | "unbond":
                    inc.execute(params, kind, a, [n], height, height * BLOCK_MS, apply=True)
                case "unjail":
                    inc.execute(params, "unjail", a, [], height, height * BLOCK_MS, apply=True)
                case "propose":
                    content: Value = ["param", "block_reward", n] if n % 2 else ["text", "t", ""]
                    inc.execute(
                        params,
                        "gov_propose",
                        a,
                        [content, n],
                        height,
                        height * BLOCK_MS,
                        apply=True,
                    )
                case "vote":
                    option = ("yes", "no", "abstain", "veto")[n]
                    inc.execute(
                        params,
                        "gov_vote",
                        a,
                        [1 + n % 2, option],
                        height,
                        height * BLOCK_MS,
                        apply=True,
                    )
                case "settle":
                    verdicts = [RoundVerdict(a, n, n, ""), RoundVerdict(b, 1000 - n, n // 3, "")]
                    settle_round(inc.econ, height, verdicts if a != b else verdicts[:1])
                case "block":
                    height += 1
                    evidence = [(b, height - 1)] if n == 3 else []
                    inc.begin_block(block(height, missing=[a] if n else [], evidence=evidence))
                    params, _, _ = inc.end_block(params, height, height * BLOCK_MS)
        except RejectedError:
            assert encode(inc.encode()) == before, f"rejected {kind} changed the state"
        ledger = inc.econ.ledger
        ledger.check_invariants()
        assert all(v > 0 for v in ledger.balances.values())
        assert all(v > 0 for v in ledger.bonded.values())
        assert min(ledger.reserve, ledger.escrow, ledger.burned) >= 0
        assert ledger.escrow == sum(
            p.deposit for p in inc.gov.proposals.values() if p.status == "voting"
        )
