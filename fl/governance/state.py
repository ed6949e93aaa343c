"""GovState: every proposal ever made (the full history), keyed by id, and the next id."""

from dataclasses import dataclass, field

from consensus.codec import Value, expect_int, expect_list, expect_seq
from fl.governance.proposals import Proposal

PROPOSALS_MAX = 1_000_000


@dataclass(slots=True)
class GovState:
    next_id: int = 1
    proposals: dict[int, Proposal] = field(default_factory=dict)

    def voting(self) -> list[Proposal]:
        return [
            self.proposals[i]
            for i in sorted(self.proposals)
            if self.proposals[i].status == "voting"
        ]

    def encode(self) -> Value:
        return [self.next_id, [self.proposals[i].encode() for i in sorted(self.proposals)]]

    @classmethod
    def decode(cls, value: Value) -> "GovState":
        next_id, proposals_v = expect_list(value, 2, "governance")
        state = cls(next_id=expect_int(next_id, "next proposal id", 1))
        for item in expect_seq(proposals_v, "proposals", PROPOSALS_MAX):
            proposal = Proposal.decode(item)
            state.proposals[proposal.id] = proposal
        return state
