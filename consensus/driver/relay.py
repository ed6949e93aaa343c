"""What a node re-sends while its height makes no progress (links lose messages, peers restart).

Our own messages of the height; the proposals of the current and valid rounds; others' votes of
the rounds that can still decide (the current round, the locked and valid rounds and the current
proposal's POL round: a peer that missed them, e.g. while it restarted, can then reach the same
quorum even if their signer is now silent or byzantine); the precommits of the previous round;
pending evidence; and the previous height's commit, for peers still finishing it (CometBFT
gossips its LastCommit the same way).

Why the previous round's precommits: a node that entered round r through timeoutPrecommit(r-1)
did so on 2f+1 precommits of r-1, some of which byzantine validators may have sent to it alone.
Honest peers still in r-1 then hold too few precommits to time out, and too few messages of r
(f+1) to skip, so nobody moves again (simulator seed 9112: n=7, a withholding lock_breaker
coalition).  Relaying those precommits is the paper's gossip assumption (a correct node's
received messages reach every correct node) for exactly the messages that justify our round:
with them a peer several rounds behind skips to r-1 (L55: 2f+1 >= f+1 of r-1) and times out
into r.  CometBFT achieves the same by sending a lagging peer the votes of the peer's round.
"""

from collections.abc import Sequence

from consensus.driver.ports import Message
from consensus.engine import EngineState, VoteSet
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
            out.extend(_others_votes(votes, own_key))
    if r > 0 and r - 1 not in rounds:
        previous = state.precommits.get(r - 1)
        if previous is not None:
            out.extend(_others_votes(previous, own_key))
    out.extend(ev for _, ev in sorted(state.evidence_pool.items()))
    commit = state.chain.last_commit
    if commit is not None:
        out.extend(
            Vote(PRECOMMIT, commit.height, commit.round, commit.block_id, s.validator, s.signature)
            for s in commit.signatures
        )
    return out


def _others_votes(votes: VoteSet, own_key: bytes) -> list[Vote]:
    return [
        vote
        for _, vote in [*sorted(votes.votes.items()), *sorted(votes.conflicting.items())]
        if vote.validator != own_key
    ]
