"""The token ledger: where every unit of the fixed supply is at any moment.

Buckets: liquid balances, bonded stake, unbonding entries (bonded stake on its way back to a
balance), the reserve (the treasury that pays rewards and collects fees), escrow (governance
deposits) and burned (slashes and burned deposits).  Every operation moves units between
buckets, never creates or destroys them, so

    sum(balances) + sum(bonded) + sum(unbonding) + reserve + escrow + burned == supply

holds after every operation; `check_invariants` verifies it (and that nothing is negative) at
the end of every block.  Operations check first and mutate only when they cannot fail; an
operation that would overdraw raises RejectedError with the state untouched.
"""

from dataclasses import dataclass, field

from consensus.codec import Value, expect_bytes, expect_int, expect_list, expect_seq
from consensus.crypto import PUBLIC_KEY_BYTES
from fl.errors import FLInvariantError, RejectedError

AMOUNT_MAX = 2**63 - 1
ITEMS_MAX = 10_000_000


@dataclass(frozen=True, slots=True)
class Unbonding:
    owner: bytes
    amount: int
    mature_ms: int  # chain time from which it is liquid again

    def encode(self) -> Value:
        return [self.owner, self.amount, self.mature_ms]


@dataclass(slots=True)
class Ledger:
    supply: int = 0
    balances: dict[bytes, int] = field(default_factory=dict)
    bonded: dict[bytes, int] = field(default_factory=dict)
    unbonding: list[Unbonding] = field(default_factory=list)  # in creation order
    reserve: int = 0
    escrow: int = 0
    burned: int = 0

    # -- reads ----------------------------------------------------------------------------------

    def balance(self, key: bytes) -> int:
        return self.balances.get(key, 0)

    def stake(self, key: bytes) -> int:
        return self.bonded.get(key, 0)

    def total_bonded(self) -> int:
        return sum(self.bonded.values())

    def unbonding_of(self, key: bytes) -> int:
        return sum(u.amount for u in self.unbonding if u.owner == key)

    # -- moves ----------------------------------------------------------------------------------

    def _set(self, table: dict[bytes, int], key: bytes, amount: int) -> None:
        if amount:
            table[key] = amount
        else:
            table.pop(key, None)  # zero entries are dropped so the hash has one form per state

    def transfer(self, src: bytes, dst: bytes, amount: int) -> None:
        _positive(amount)
        self._need(src, amount)
        self._set(self.balances, src, self.balance(src) - amount)
        self._set(self.balances, dst, self.balance(dst) + amount)

    def bond(self, key: bytes, amount: int) -> None:
        _positive(amount)
        self._need(key, amount)
        self._set(self.balances, key, self.balance(key) - amount)
        self._set(self.bonded, key, self.stake(key) + amount)

    def unbond(self, key: bytes, amount: int, mature_ms: int) -> None:
        _positive(amount)
        if self.stake(key) < amount:
            raise RejectedError(f"unbond {amount} exceeds bonded stake {self.stake(key)}")
        self._set(self.bonded, key, self.stake(key) - amount)
        self.unbonding.append(Unbonding(key, amount, mature_ms))

    def mature(self, time_ms: int) -> list[Unbonding]:
        """Release every unbonding entry due at or before chain time `time_ms` to its owner."""
        due = [u for u in self.unbonding if u.mature_ms <= time_ms]
        if due:
            self.unbonding = [u for u in self.unbonding if u.mature_ms > time_ms]
            for u in due:
                self._set(self.balances, u.owner, self.balance(u.owner) + u.amount)
        return due

    def slash(self, key: bytes, permille: int) -> int:
        """Burn `permille` of `key`'s bonded and unbonding stake; returns the amount burned.

        Unbonding entries are slashed too, so unbonding right before a verdict is no escape.
        Each share is floored; if everything floors to zero a non-zero stake still loses 1.
        """
        if permille <= 0:
            return 0
        stake = self.stake(key)
        burned = stake * permille // 1000
        entries: list[Unbonding] = []
        for u in self.unbonding:
            cut = u.amount * permille // 1000 if u.owner == key else 0
            burned += cut
            if u.amount - cut > 0:
                entries.append(Unbonding(u.owner, u.amount - cut, u.mature_ms))
        if burned == 0 and stake > 0:
            burned = 1  # a slash that rounds to nothing would be no penalty at all
            stake -= 1
        else:
            stake -= stake * permille // 1000
        self._set(self.bonded, key, stake)
        self.unbonding = entries
        self.burned += burned
        return burned

    def pay_reward(self, key: bytes, amount: int, to_stake: bool) -> int:
        """Pay up to `amount` from the reserve; returns what was paid (the reserve may run dry)."""
        paid = min(max(amount, 0), self.reserve)
        if paid:
            self.reserve -= paid
            table = self.bonded if to_stake else self.balances
            self._set(table, key, table.get(key, 0) + paid)
        return paid

    def charge_fee(self, key: bytes, amount: int) -> None:
        if amount <= 0:
            return
        self._need(key, amount, "fee")
        self._set(self.balances, key, self.balance(key) - amount)
        self.reserve += amount

    def lock_deposit(self, key: bytes, amount: int) -> None:
        _positive(amount)
        self._need(key, amount, "deposit")
        self._set(self.balances, key, self.balance(key) - amount)
        self.escrow += amount

    def refund_deposit(self, key: bytes, amount: int) -> None:
        self._take_escrow(amount)
        self._set(self.balances, key, self.balance(key) + amount)

    def burn_deposit(self, amount: int) -> None:
        self._take_escrow(amount)
        self.burned += amount

    def _take_escrow(self, amount: int) -> None:
        if not 0 <= amount <= self.escrow:
            raise FLInvariantError(f"escrow {self.escrow} cannot release {amount}")
        self.escrow -= amount

    def _need(self, key: bytes, amount: int, what: str = "amount") -> None:
        if self.balance(key) < amount:
            raise RejectedError(f"{what} {amount} exceeds balance {self.balance(key)}")

    # -- invariant ------------------------------------------------------------------------------

    def accounted(self) -> int:
        return (
            sum(self.balances.values())
            + sum(self.bonded.values())
            + sum(u.amount for u in self.unbonding)
            + self.reserve
            + self.escrow
            + self.burned
        )

    def check_invariants(self) -> None:
        negative = [k for k, v in (*self.balances.items(), *self.bonded.items()) if v <= 0]
        if negative or min(self.reserve, self.escrow, self.burned) < 0:
            raise FLInvariantError("ledger holds a negative or zero entry")
        if any(u.amount <= 0 for u in self.unbonding):
            raise FLInvariantError("ledger holds a non-positive unbonding entry")
        if self.accounted() != self.supply:
            raise FLInvariantError(f"supply {self.supply} != accounted {self.accounted()}")

    # -- encoding -------------------------------------------------------------------------------

    def encode(self) -> Value:
        return [
            self.supply,
            [[k, self.balances[k]] for k in sorted(self.balances)],
            [[k, self.bonded[k]] for k in sorted(self.bonded)],
            [u.encode() for u in self.unbonding],
            self.reserve,
            self.escrow,
            self.burned,
        ]

    @classmethod
    def decode(cls, value: Value) -> "Ledger":
        supply, balances_v, bonded_v, unbonding_v, reserve, escrow, burned = expect_list(
            value, 7, "ledger"
        )
        ledger = cls(
            supply=expect_int(supply, "supply", 0, AMOUNT_MAX),
            balances=_decode_table(balances_v, "balances"),
            bonded=_decode_table(bonded_v, "bonded"),
            reserve=expect_int(reserve, "reserve", 0, AMOUNT_MAX),
            escrow=expect_int(escrow, "escrow", 0, AMOUNT_MAX),
            burned=expect_int(burned, "burned", 0, AMOUNT_MAX),
        )
        for item in expect_seq(unbonding_v, "unbonding", ITEMS_MAX):
            owner, amount, mature = expect_list(item, 3, "unbonding entry")
            ledger.unbonding.append(
                Unbonding(
                    expect_bytes(owner, "unbonding owner", PUBLIC_KEY_BYTES),
                    expect_int(amount, "unbonding amount", 1, AMOUNT_MAX),
                    expect_int(mature, "unbonding mature time", 0),
                )
            )
        return ledger


def _decode_table(value: Value, what: str) -> dict[bytes, int]:
    table: dict[bytes, int] = {}
    for item in expect_seq(value, what, ITEMS_MAX):
        key, amount = expect_list(item, 2, what)
        table[expect_bytes(key, f"{what} key", PUBLIC_KEY_BYTES)] = expect_int(
            amount, f"{what} amount", 1, AMOUNT_MAX
        )
    return table


def _positive(amount: int) -> None:
    if amount <= 0:
        raise RejectedError(f"amount must be positive, got {amount}")
