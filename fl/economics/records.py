"""Per-participant incentive records: clients (reputation, cross-round evidence,
jail, ban, registry admission, objective faults) and validators
(admission, jail, tombstone, missed-block window).  Plain values with canonical encodings."""

from dataclasses import dataclass, field

from consensus.codec import Value, expect_bool, expect_int, expect_list, expect_seq

MISSED_MAX = 10_000  # the downtime window is at most this many blocks (params bound)


@dataclass(slots=True)
class ClientRecord:
    reputation: int
    accepted: int = 0
    flagged: int = 0
    evidence: int = 0  # EWMA of per-round suspicion, permille (clients.py)
    judged: int = 0  # rounds judged since the last evidence slash
    jailed_until_round: int = 0  # may submit again from this round on
    jailings: int = 0
    banned: bool = False
    slashed: int = 0  # total stake burned, for the record
    rewarded: int = 0  # total rewards received
    admitted: bool = False  # by governance (`client_admit`), for registry admission
    faults: int = 0  # objective faults (equivocation, undecodable update, reveal mismatch)
    fault_round: int = -1  # last round an objective fault was punished in (once per round)

    def encode(self) -> Value:
        return [
            self.reputation,
            self.accepted,
            self.flagged,
            self.evidence,
            self.judged,
            self.jailed_until_round,
            self.jailings,
            self.banned,
            self.slashed,
            self.rewarded,
            self.admitted,
            self.faults,
            self.fault_round,
        ]

    @classmethod
    def decode(cls, value: Value) -> "ClientRecord":
        (
            rep,
            acc,
            flg,
            evidence,
            judged,
            jailed,
            jailings,
            banned,
            slashed,
            rewarded,
            admitted,
            faults,
            fault_round,
        ) = expect_list(value, 13, "client record")
        return cls(
            expect_int(rep, "reputation", 0, 1000),
            expect_int(acc, "accepted", 0),
            expect_int(flg, "flagged", 0),
            expect_int(evidence, "evidence", 0, 1000),
            expect_int(judged, "judged", 0),
            expect_int(jailed, "jailed until", 0),
            expect_int(jailings, "jailings", 0),
            expect_bool(banned, "banned"),
            expect_int(slashed, "slashed", 0),
            expect_int(rewarded, "rewarded", 0),
            expect_bool(admitted, "admitted"),
            expect_int(faults, "faults", 0),
            expect_int(fault_round, "fault round", -1),
        )


@dataclass(slots=True)
class ValidatorRecord:
    admitted: bool = True
    jailed: bool = False
    jailed_until_ms: int = 0  # unjail is accepted in blocks from this chain time on
    tombstoned: bool = False
    tracked_since: int = 0  # first height of the current downtime window
    missed: list[int] = field(default_factory=list)  # heights missed inside the window, ascending
    slashed: int = 0
    rewarded: int = 0

    def encode(self) -> Value:
        return [
            self.admitted,
            self.jailed,
            self.jailed_until_ms,
            self.tombstoned,
            self.tracked_since,
            list(self.missed),
            self.slashed,
            self.rewarded,
        ]

    @classmethod
    def decode(cls, value: Value) -> "ValidatorRecord":
        adm, jailed, until, tomb, since, missed_v, slashed, rewarded = expect_list(
            value, 8, "validator record"
        )
        return cls(
            expect_bool(adm, "admitted"),
            expect_bool(jailed, "jailed"),
            expect_int(until, "jailed until", 0),
            expect_bool(tomb, "tombstoned"),
            expect_int(since, "tracked since", 0),
            [expect_int(h, "missed height", 0) for h in expect_seq(missed_v, "missed", MISSED_MAX)],
            expect_int(slashed, "slashed", 0),
            expect_int(rewarded, "rewarded", 0),
        )
