"""What a node re-sends while its height makes no progress (links lose messages, peers restart).

Our own messages of the height; the proposals of the current and valid rounds; others' votes of
the rounds that can still decide (the current round, the locked and valid rounds and the current
proposal's POL round: a peer that missed them, e.g. while it restarted, can then reach the same
quorum even if their signer is now silent or byzantine); pending evidence; and the previous
height's commit, for peers still finishing it (CometBFT gossips its LastCommit the same way).
"""

from collections.abc import Sequence

from consensus.driver.ports import Message
from consensus.engine import EngineState
from consensus.types import PRECOMMIT, Vote


def relay_messages(
    state: EngineState, own: Sequence[Message], own_key: bytes, proposals: bool
) -> list[Message]:
    out: list[Message] = list(own)
    r = state.round
    current = state.proposals.get(r)
    if proposals:
        for round_ in sorted({r, state.valid_round} - {-1}):
            p = state.proposals.get(round_)
            if p is not None and p.proposer != own_key:
                out.append(p)
    rounds = {r, state.locked_round, state.valid_round}
    if current is not None:
        rounds.add(current.pol_round)
    for round_ in sorted(rounds - {-1}):
        for sets in (state.prevotes, state.precommits):
            votes = sets.get(round_)
            if votes is None:
                continue
            for _, vote in [*sorted(votes.votes.items()), *sorted(votes.conflicting.items())]:
                if vote.validator != own_key:
                    out.append(vote)
    out.extend(ev for _, ev in sorted(state.evidence_pool.items()))
    commit = state.chain.last_commit
    if commit is not None:
        out.extend(
            Vote(PRECOMMIT, commit.height, commit.round, commit.block_id, s.validator, s.signature)
            for s in commit.signatures
        )
    return out
