"""Byzantine behaviours: what a faulty validator sends instead of what its honest engine said.

A byzantine node runs an honest engine; the simulator passes every message that node is about
to send (its own proposals and votes, relays and evidence, first sends and gossip re-sends
alike) through `outgoing`, and sends what comes back:

    outgoing(behaviour, ctx, message) -> [(recipient node index, or None for every peer, msg)]

The function does no I/O and reads no clock: every random choice comes from `ctx.rng` (the
simulation's seeded generator) and whatever must stay consistent across calls (the block it
pushes in a round, the peers it talks to in a round) lives in `ctx.memory`, owned by the node.
It signs with the node's own key only, so everything it emits passes signature checks: the
honest nodes must catch the lie by the protocol, not by cryptography.

Behaviours (`BEHAVIOURS`):
- ``silent``: sends nothing (also no block sync answers; the node checks that itself).
- ``amnesia``: sends honestly here; the node forgets its lock every round and restarts without
  its WAL or its LastSigned guard.
- ``equivocate``: a second proposal for another block; each peer gets one, the other or both.
- ``equivocate_each``: a different block for every peer.
- ``double_vote``: a conflicting vote (nil vs a block) beside each vote; peers get either/both.
- ``lie_pol``: proposes a fresh block claiming a proof-of-lock round it does not have
  (pol_round = round - 1, or another earlier round) and votes for it: a node that trusts the
  claim without counting the prevotes unlocks.
- ``withhold``: its votes reach only a subset of peers, chosen anew each (height, round).
- ``bad_time``: proposals re-signed with a header time far in the future or the past (the block
  id follows; the header is otherwise consistent) and votes for that block.
- ``flood_rounds``: besides its normal messages, signed nil votes for rounds far ahead (within
  and beyond the engine's rounds-ahead bound), to pull honest nodes forward and fill their logs.
- ``lock_breaker``: a coalition (every lock_breaker of the run, coordinated without talking:
  its choices come from a hash of the height and round) that splits locks, then exploits any
  honest node that unlocks wrongly.  In the first round of a height whose proposer is a
  member, the proposal and the members' prevotes reach just enough honest validators (S) to
  make them lock, and the members' precommits reach one of them (the decider; the others get
  nil precommits): the decider decides, the rest of S is locked without deciding and the
  others are not locked.  In a later
  round a member proposes a fresh block (pol_round -1, or a false round >= the lock round) and
  all members vote for it: a quorum only if locked honest nodes unlock without a proof.

Targeted behaviours (`TARGETED`: named by a hunt shape, left out of the campaign's rotation so
its seeds keep their shapes):
- ``hide_pol``: a proposer whose proof of lock only one honest validator sees in time.  In its
  first proposer round of a height it proposes honestly, but the proposal reaches at once only
  just enough honest validators (S) to make a quorum with its own power, and its prevote only
  the one of them with the least power (the locker); everyone else gets both only once it has
  precommitted in that round (`held_until_precommit`: perfect timing, which the model allows a
  faulty node; the network itself stays synchronous).
  Its precommit goes nowhere.  The locker locks alone; the rest of S precommit nil and then see
  the proposal with 2f+1 prevotes while still in the round (L36 at step precommit: a valid value
  without a lock, L42-L43), so an honest proposer must re-propose it (L15-L16) for the locker to
  agree.  In its later proposer rounds of that height it proposes nothing.
"""

import random
from dataclasses import dataclass, field, replace

from consensus.crypto import PrivateKey
from consensus.types import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    ROUND_MAX,
    TIME_MS_MAX,
    Block,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    proposal_sign_bytes,
    txs_hash,
    vote_sign_bytes,
)
from consensus.validators import ValidatorSet

Message = Proposal | Vote | DuplicateVoteEvidence
Outgoing = list[tuple[int | None, Message]]

BEHAVIOURS = (
    "equivocate",
    "double_vote",
    "silent",
    "amnesia",
    "lie_pol",
    "withhold",
    "bad_time",
    "flood_rounds",
    "equivocate_each",
    "lock_breaker",
)

TARGETED = ("hide_pol",)

# Behaviours that propose their own block and vote for it in that round.
PUSHING = ("lie_pol", "bad_time", "lock_breaker")

# Far-ahead votes per real vote of a flooding node, and how far ahead they reach.
FLOOD_VOTES_MAX = 3
FLOOD_ROUNDS_AHEAD_MAX = 96
HOUR_MS = 3_600_000
YEAR_MS = 365 * 24 * HOUR_MS


@dataclass(slots=True)
class ByzantineMemory:
    """A byzantine node's scratch between calls, pruned to the last two heights."""

    # (height, round) -> the proposal this node pushed instead of its engine's (re-sends repeat
    # it byte for byte); its votes of that round follow the pushed block.
    pushed: dict[tuple[int, int], Proposal] = field(default_factory=dict)
    # (height, round) -> the peers its votes reach in that round.
    audience: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)
    height: int = 0

    def prune(self, height: int) -> None:
        if height == self.height:
            return
        self.height = height
        for table in (self.pushed, self.audience):
            for key in [k for k in table if k[0] < height - 1]:
                del table[key]


@dataclass(frozen=True, slots=True)
class ByzantineContext:
    key: PrivateKey
    chain_id: str
    nodes: int  # every node of the network, this one included; recipients are 0..nodes-1
    index: int  # this node
    rng: random.Random
    height: int  # the node's engine: current height and round
    round: int
    memory: ByzantineMemory
    # For coalitions (lock_breaker): the current validator set, every node's public key by
    # node index, and the node indices of all byzantine nodes of the run (this one included).
    validators: ValidatorSet | None = None
    keys: tuple[bytes, ...] = ()
    allies: tuple[int, ...] = ()

    @property
    def peers(self) -> list[int]:
        return [i for i in range(self.nodes) if i != self.index]


def outgoing(behaviour: str, ctx: ByzantineContext, message: Message) -> Outgoing:
    """What a node with `behaviour` sends where its honest engine would send `message`."""
    ctx.memory.prune(ctx.height)
    everyone: Outgoing = [(None, message)]
    if behaviour == "silent":
        return []
    if not _own(ctx, message):
        return everyone  # relays and evidence: a liar still passes on what others signed
    if isinstance(message, Vote) and behaviour in PUSHING:
        message = _follow_pushed(ctx, message)
        everyone = [(None, message)]
    match behaviour:
        case "equivocate" if isinstance(message, Proposal):
            return _split(ctx, message, _with_block(ctx, message, _fresh_block(ctx, message, 0)))
        case "equivocate_each" if isinstance(message, Proposal):
            return [
                (peer, _with_block(ctx, message, _fresh_block(ctx, message, peer)))
                for peer in ctx.peers
            ]
        case "double_vote" if isinstance(message, Vote):
            return _split(ctx, message, _conflicting_vote(ctx, message))
        case "lie_pol" if isinstance(message, Proposal):
            return [(None, _lie_pol(ctx, message))]
        case "withhold" if isinstance(message, Vote):
            return [(peer, message) for peer in _audience(ctx, message)]
        case "bad_time" if isinstance(message, Proposal):
            return [(None, _bad_time(ctx, message))]
        case "flood_rounds" if isinstance(message, Vote):
            return [*everyone, *((None, v) for v in _flood(ctx, message))]
        case "lock_breaker":
            return _lock_breaker(ctx, message)
        case "hide_pol":
            return _hide_pol(ctx, message)
        case _:
            return everyone


# ---- signing -----------------------------------------------------------------------------------


def sign_vote(
    ctx: ByzantineContext, vote_type: int, height: int, round_: int, block_id: bytes
) -> Vote:
    message = vote_sign_bytes(ctx.chain_id, vote_type, height, round_, block_id)
    return Vote(vote_type, height, round_, block_id, ctx.key.public_key, ctx.key.sign(message))


def _with_block(
    ctx: ByzantineContext, proposal: Proposal, block: Block, pol_round: int | None = None
) -> Proposal:
    pol = proposal.pol_round if pol_round is None else pol_round
    message = proposal_sign_bytes(ctx.chain_id, proposal.height, proposal.round, pol, block.id())
    return replace(proposal, pol_round=pol, block=block, signature=ctx.key.sign(message))


def _fresh_block(ctx: ByzantineContext, proposal: Proposal, tag: int) -> Block:
    """Another valid block for the same height: one more key=value tx, data hash updated."""
    block = proposal.block
    tx = f"byz{ctx.index}/{proposal.height}/{proposal.round}/{tag}=x".encode()
    txs = (*block.txs, tx)
    return Block(
        replace(block.header, data_hash=txs_hash(txs)), txs, block.evidence, block.last_commit
    )


def _own(ctx: ByzantineContext, message: Message) -> bool:
    match message:
        case Proposal():
            return message.proposer == ctx.key.public_key
        case Vote():
            return message.validator == ctx.key.public_key
        case DuplicateVoteEvidence():
            return False


def _follow_pushed(ctx: ByzantineContext, vote: Vote) -> Vote:
    """In a round where it pushed its own block, its votes are for that block, whatever its
    engine thought."""
    pushed = ctx.memory.pushed.get((vote.height, vote.round))
    if pushed is None or vote.block_id == pushed.block.id():
        return vote
    return sign_vote(ctx, vote.type, vote.height, vote.round, pushed.block.id())


def _push(ctx: ByzantineContext, proposal: Proposal, block: Block, pol_round: int) -> Proposal:
    """Send `block` instead of the engine's; a re-send repeats the first push exactly."""
    key = (proposal.height, proposal.round)
    pushed = ctx.memory.pushed.get(key)
    if pushed is None:
        pushed = _with_block(ctx, proposal, block, pol_round)
        ctx.memory.pushed[key] = pushed
    return pushed


# ---- behaviours --------------------------------------------------------------------------------


def _split(ctx: ByzantineContext, first: Message, second: Message) -> Outgoing:
    sent: Outgoing = []
    for peer in ctx.peers:
        choice = ctx.rng.randrange(3)
        if choice in (0, 2):
            sent.append((peer, first))
        if choice in (1, 2):
            sent.append((peer, second))
    return sent


def _conflicting_vote(ctx: ByzantineContext, vote: Vote) -> Vote:
    block_id = NIL if vote.block_id != NIL else ctx.rng.randbytes(32)
    return sign_vote(ctx, vote.type, vote.height, vote.round, block_id)


def _false_pol(ctx: ByzantineContext, proposal: Proposal) -> int:
    if proposal.round == 0:
        return -1
    if ctx.rng.randrange(4) == 0:
        return ctx.rng.randrange(proposal.round)
    return proposal.round - 1  # the most useful lie: at or above any earlier lock


def _lie_pol(ctx: ByzantineContext, proposal: Proposal) -> Proposal:
    if proposal.round == 0:
        return proposal
    return _push(ctx, proposal, _fresh_block(ctx, proposal, 0), _false_pol(ctx, proposal))


def _audience(ctx: ByzantineContext, vote: Vote) -> tuple[int, ...]:
    key = (vote.height, vote.round)
    chosen = ctx.memory.audience.get(key)
    if chosen is None:
        peers = ctx.peers
        chosen = tuple(sorted(ctx.rng.sample(peers, ctx.rng.randint(0, max(0, len(peers) - 1)))))
        ctx.memory.audience[key] = chosen
    return chosen


def _bad_time(ctx: ByzantineContext, proposal: Proposal) -> Proposal:
    header = proposal.block.header
    t = header.time_ms
    choice = ctx.rng.randrange(5)
    if choice == 0:
        new_time = TIME_MS_MAX  # the largest encodable time
    elif choice == 1:
        new_time = min(TIME_MS_MAX, t + YEAR_MS)
    elif choice == 2:
        new_time = min(TIME_MS_MAX, t + ctx.rng.randint(60_000, HOUR_MS))
    elif choice == 3:
        new_time = max(0, t - ctx.rng.randint(60_000, HOUR_MS))
    else:
        new_time = max(0, t - 1)  # at or before the previous block's time, most likely
    block = proposal.block
    bent = Block(replace(header, time_ms=new_time), block.txs, block.evidence, block.last_commit)
    return _push(ctx, proposal, bent, proposal.pol_round)


def _flood(ctx: ByzantineContext, vote: Vote) -> list[Vote]:
    votes = []
    for _ in range(ctx.rng.randint(1, FLOOD_VOTES_MAX)):
        if ctx.rng.randrange(8) == 0:
            target = ctx.rng.randint(vote.round + FLOOD_ROUNDS_AHEAD_MAX, ROUND_MAX)
        else:
            target = vote.round + ctx.rng.randint(1, FLOOD_ROUNDS_AHEAD_MAX)
        vote_type = PREVOTE if ctx.rng.randrange(2) == 0 else PRECOMMIT
        votes.append(sign_vote(ctx, vote_type, vote.height, min(target, ROUND_MAX), NIL))
    return votes


@dataclass(frozen=True, slots=True)
class _LockSplit:
    audience: tuple[int, ...]  # nodes the proposal and prevotes reach: S and the coalition
    decider: int  # the one honest node the coalition's precommits reach


def _coalition(ctx: ByzantineContext) -> tuple[int, ...]:
    return tuple(sorted({*ctx.allies, ctx.index}))


def _member_proposes(ctx: ByzantineContext, round_: int) -> bool:
    if ctx.validators is None or not ctx.keys:
        return False
    proposer = ctx.validators.proposer(round_)
    return any(ctx.keys[i] == proposer for i in _coalition(ctx) if i < len(ctx.keys))


def _first_member_round(ctx: ByzantineContext, round_: int) -> int | None:
    """The first round <= round_ of this height with a coalition proposer, if any."""
    for r in range(round_ + 1):
        if _member_proposes(ctx, r):
            return r
    return None


def _just_enough(
    ctx: ByzantineContext, validators: ValidatorSet, faulty: set[int], power: int, label: str
) -> list[int] | None:
    """Honest validators in an order seeded by `label` (the same for every caller), just enough
    of them to make a quorum with `power`; None if that takes every one of them or is not
    possible (then nobody would be left out)."""
    honest = [
        i for i, key in enumerate(ctx.keys) if i not in faulty and validators.index(key) is not None
    ]
    random.Random(label).shuffle(honest)
    chosen: list[int] = []
    for i in honest:
        if validators.has_quorum(power):
            break
        chosen.append(i)
        power += validators.power_of(ctx.keys[i])
    if not chosen or len(chosen) == len(honest) or not validators.has_quorum(power):
        return None
    return chosen


def _plan(ctx: ByzantineContext, height: int, round_: int) -> _LockSplit | None:
    """The coalition's plan for (height, round_) if it is the height's first member round:
    the same for every member (seeded by the height and round, not by ctx.rng)."""
    validators = ctx.validators
    if validators is None or _first_member_round(ctx, round_) != round_:
        return None
    coalition = _coalition(ctx)
    # Just enough honest validators lock (with the coalition's power they make a quorum);
    # the others do not, and the coalition's engines see too few precommits to decide.
    power = sum(validators.power_of(ctx.keys[i]) for i in coalition if i < len(ctx.keys))
    chosen = _just_enough(ctx, validators, {*coalition}, power, f"lock_breaker/{height}/{round_}")
    if chosen is None:
        return None  # no honest validator can be left out: nothing to split
    return _LockSplit(tuple(sorted({*chosen, *coalition} - {ctx.index})), chosen[0])


def _lock_breaker(ctx: ByzantineContext, message: Message) -> Outgoing:
    if isinstance(message, DuplicateVoteEvidence):
        return [(None, message)]
    split = _plan(ctx, message.height, message.round)
    if isinstance(message, Proposal):
        if split is not None:
            return [(peer, message) for peer in split.audience]
        first = _first_member_round(ctx, message.round)
        if first is None or first >= message.round:
            return [(None, message)]
        pol = -1 if ctx.rng.randrange(2) == 0 else _false_pol(ctx, message)
        return [(None, _push(ctx, message, _fresh_block(ctx, message, 0), pol))]
    if split is None:
        return [(None, message)]  # (already following a block it pushed, if any)
    if message.type == PREVOTE:
        return [(peer, message) for peer in split.audience]
    # The decider gets the precommit it needs; everyone else a nil one (a double sign: the
    # others count it towards their precommit timeout, never towards a decision).
    sends: Outgoing = [(split.decider, message)]
    if message.block_id != NIL:
        nil = sign_vote(ctx, PRECOMMIT, message.height, message.round, NIL)
        sends += [(peer, nil) for peer in ctx.peers if peer != split.decider]
    return sends


# ---- hide_pol ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PolSplit:
    audience: tuple[int, ...]  # honest nodes the proposal reaches at once (S)
    locker: int  # the one the prevote reaches at once


def _own_rounds(ctx: ByzantineContext, round_: int) -> list[int]:
    """This node's proposer rounds of the height up to `round_`."""
    validators = ctx.validators
    if validators is None:
        return []
    return [r for r in range(round_ + 1) if validators.proposer(r) == ctx.key.public_key]


def _hide_plan(ctx: ByzantineContext, height: int, round_: int) -> _PolSplit | None:
    """hide_pol's split of (height, round_) if that is its first proposer round of the height
    (seeded by the height and round, so `hold_ms` recomputes the same plan)."""
    validators = ctx.validators
    own = _own_rounds(ctx, round_)
    if validators is None or not own or own[0] != round_:
        return None
    power = validators.power_of(ctx.key.public_key)
    faulty = {*ctx.allies, ctx.index}
    chosen = _just_enough(ctx, validators, faulty, power, f"hide_pol/{height}/{round_}")
    if chosen is None:
        return None  # nobody left to prevote nil: S would see the proof without this node
    locker = min(chosen, key=lambda i: validators.power_of(ctx.keys[i]))
    return _PolSplit(tuple(sorted(chosen)), locker)


def _hide_pol(ctx: ByzantineContext, message: Message) -> Outgoing:
    if isinstance(message, DuplicateVoteEvidence):
        return [(None, message)]
    split = _hide_plan(ctx, message.height, message.round)
    if split is not None:
        if isinstance(message, Vote) and message.type == PRECOMMIT:
            return []
        return [(None, message)]  # held_until_precommit decides who gets it late
    if isinstance(message, Proposal):
        own = _own_rounds(ctx, message.round)
        if own and own[0] < message.round and _hide_plan(ctx, message.height, own[0]):
            return []  # a later round of a height it split: no proposal at all
    return [(None, message)]


def held_until_precommit(
    behaviour: str, ctx: ByzantineContext, message: Message, recipient: int
) -> bool:
    """True if this copy of the node's own `message` is held back until `recipient` has
    precommitted in the message's round (the simulator watches for that moment: an adversary
    that times its messages perfectly, as the model allows a faulty node).  Only hide_pol holds
    anything."""
    if (
        behaviour != "hide_pol"
        or isinstance(message, DuplicateVoteEvidence)
        or not _own(ctx, message)
    ):
        return False
    split = _hide_plan(ctx, message.height, message.round)
    if split is None:
        return False
    if isinstance(message, Proposal):
        return recipient not in split.audience
    return not (message.type == PREVOTE and recipient == split.locker)
