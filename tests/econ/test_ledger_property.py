"""Property: any sequence of transfers, bonds, unbonds, maturities, slashes, rewards, fees and
deposits keeps supply == accounted and never leaves a negative or zero entry."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.economics.ledger import Ledger
from fl.errors import RejectedError

KEYS = [bytes([i]) * 32 for i in range(4)]

ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["transfer", "bond", "unbond", "mature", "slash", "reward", "fee", "deposit", "refund"]
        ),
        st.sampled_from(KEYS),
        st.sampled_from(KEYS),
        st.integers(min_value=-5, max_value=3_000),
        st.booleans(),
    ),
    max_size=80,
)


def _ledger() -> Ledger:
    ledger = Ledger(balances={k: 1_000 for k in KEYS}, bonded={KEYS[0]: 500}, reserve=2_000)
    ledger.supply = ledger.accounted()
    return ledger


@settings(max_examples=300, deadline=None)
@given(ops)
def test_random_sequences_keep_the_supply_invariant(sequence: list) -> None:  # type: ignore[type-arg]
    ledger = _ledger()
    deposits: list[tuple[bytes, int]] = []
    for height, (op, a, b, amount, flag) in enumerate(sequence, start=1):
        before = ledger.encode()
        try:
            match op:
                case "transfer":
                    ledger.transfer(a, b, amount)
                case "bond":
                    ledger.bond(a, amount)
                case "unbond":
                    ledger.unbond(a, amount, height + amount % 7)
                case "mature":
                    ledger.mature(height)
                case "slash":
                    ledger.slash(a, amount % 1001)
                case "reward":
                    ledger.pay_reward(a, amount, to_stake=flag)
                case "fee":
                    ledger.charge_fee(a, amount)
                case "deposit":
                    ledger.lock_deposit(a, amount)
                    deposits.append((a, amount))
                case "refund":
                    if deposits:
                        owner, dep = deposits.pop(0)
                        if flag:
                            ledger.refund_deposit(owner, dep)
                        else:
                            ledger.burn_deposit(dep)
        except RejectedError:
            assert ledger.encode() == before, f"rejected {op} changed the ledger"
        ledger.check_invariants()
        assert all(v > 0 for v in ledger.balances.values())
        assert all(v > 0 for v in ledger.bonded.values())
        assert ledger.reserve >= 0
        assert ledger.escrow >= 0


def test_overdraw_is_rejected_with_a_reason() -> None:
    ledger = _ledger()
    with pytest.raises(RejectedError, match="exceeds balance"):
        ledger.transfer(KEYS[0], KEYS[1], 1_001)


def test_slash_reaches_unbonding_entries() -> None:
    ledger = Ledger(bonded={KEYS[0]: 1_000})
    ledger.supply = 1_000
    ledger.unbond(KEYS[0], 600, mature_ms=10)
    burned = ledger.slash(KEYS[0], 100)
    assert burned == 100  # 10% of 400 bonded + 10% of 600 unbonding
    assert ledger.stake(KEYS[0]) == 360
    assert ledger.unbonding_of(KEYS[0]) == 540
    ledger.check_invariants()


def test_encoding_round_trips() -> None:
    from consensus.codec import decode, encode

    ledger = _ledger()
    ledger.unbond(KEYS[0], 100, 5)
    raw = encode(ledger.encode())
    assert encode(Ledger.decode(decode(raw)).encode()) == raw
