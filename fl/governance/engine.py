"""Governance transactions and end-of-block tallying.

Theory of operation.  `gov_propose` [content, deposit] locks the deposit (at least
`gov_deposit_min`) in escrow and opens voting from its block H (chain time T, the BFT block
time) until T + `gov_voting_period_ms`: votes are taken in blocks whose time is at most that,
and the tally runs at the end of the first block whose time reaches it.  Chain time, not a
block count, so a vote lasts as long at 50 blocks a second as with a block a minute.  A
parameter change is validated against the current parameters when proposed (unknown names and
out-of-range values are rejected then) and again when executed.  `gov_vote` [proposal id,
option] needs bonded stake and an open period; a second vote replaces the first.  At the end of
that block every node tallies with the
voters' bonded stake at that moment (stake, not balances, so weight cannot be borrowed for one
block without being locked for the unbonding period):
    quorum    voted * 1000 >= quorum_permille * total bonded       else "no_quorum"
    veto      veto * 1000 > veto_permille * voted                   "vetoed", deposit burned
    threshold yes * 1000 > threshold_permille * (yes + no + veto)  "passed", else "rejected"
Passed and rejected proposals get their deposit back; "no_quorum" burns it when
`gov_burn_no_quorum` is 1.  A passed proposal is executed in the same step, so the change is in
force from the next block on, at the same height on every node.
"""

from collections.abc import Sequence

from consensus.app import Event
from consensus.codec import Value, expect_int, expect_list, expect_str
from consensus.errors import CodecError
from fl.economics import clients, validators
from fl.economics.ledger import AMOUNT_MAX
from fl.economics.state import EconState
from fl.errors import RejectedError
from fl.governance.params import ParamSet, apply_change
from fl.governance.proposals import OPTIONS, Content, Proposal, Tally, decode_content
from fl.governance.state import GovState
from fl.params import Params

KINDS = ("gov_propose", "gov_vote")


def propose_body(content: Value, deposit: int) -> Value:
    return [content, deposit]


def vote_body(proposal_id: int, option: str) -> Value:
    return [proposal_id, option]


def execute(
    gov: GovState,
    econ: EconState,
    fl_params: Params,
    kind: str,
    sender: bytes,
    body: Value,
    height: int,
    time_ms: int,
    apply: bool,
) -> tuple[Event, ...]:
    match kind:
        case "gov_propose":
            return _propose(gov, econ, fl_params, sender, body, height, time_ms, apply)
        case "gov_vote":
            return _vote(gov, econ, sender, body, time_ms, apply)
        case _:
            raise RejectedError(f"unknown governance transaction kind {kind!r}")


def _propose(
    gov: GovState,
    econ: EconState,
    fl_params: Params,
    sender: bytes,
    body: Value,
    height: int,
    time_ms: int,
    apply: bool,
) -> tuple[Event, ...]:
    try:
        content_v, deposit_v = expect_list(body, 2, "gov_propose")
        deposit = expect_int(deposit_v, "deposit", 0, AMOUNT_MAX)
    except CodecError as exc:
        raise RejectedError(f"malformed gov_propose: {exc}") from None
    content = decode_content(content_v)
    params = econ.params
    if deposit < params.gov_deposit_min:
        raise RejectedError(f"deposit {deposit} is below the minimum {params.gov_deposit_min}")
    if econ.ledger.balance(sender) < deposit:
        raise RejectedError(f"deposit {deposit} exceeds balance {econ.ledger.balance(sender)}")
    if len(gov.voting()) >= params.gov_active_max:
        raise RejectedError(f"{params.gov_active_max} proposals are already in their voting period")
    _check_content(econ, ParamSet(fl_params, params), content)
    end = time_ms + params.gov_voting_period_ms
    pid = gov.next_id
    if apply:
        econ.ledger.lock_deposit(sender, deposit)
        gov.proposals[pid] = Proposal(pid, sender, content, deposit, height, end)
        gov.next_id += 1
    return (
        Event(
            "gov_proposal_submitted",
            (
                ("proposal", str(pid)),
                ("content", content.summary()[:120]),
                ("deposit", str(deposit)),
                ("voting_end_ms", str(end)),
            ),
        ),
    )


def _check_content(econ: EconState, current: ParamSet, content: Content) -> None:
    match content.kind:
        case "param":
            apply_change(current, content.name, content.value)
        case "validator_admit":
            record = econ.validators.get(content.key)
            if record is not None and record.admitted:
                raise RejectedError("validator is already admitted")
            if record is not None and record.tombstoned:
                raise RejectedError("validator is tombstoned")
        case "validator_remove":
            record = econ.validators.get(content.key)
            if record is None or not record.admitted:
                raise RejectedError("no admitted validator with that key")
        case "client_ban":
            if econ.client_view(content.key).banned:
                raise RejectedError("client is already banned")
        case "client_unban":
            if not econ.client_view(content.key).banned:
                raise RejectedError("client is not banned")
        case "client_admit":
            if econ.client_view(content.key).admitted:
                raise RejectedError("client is already admitted")
        case "client_remove":
            if not econ.client_view(content.key).admitted:
                raise RejectedError("client is not admitted")
        case "text":
            pass
        case _:
            raise RejectedError(f"unknown proposal kind {content.kind!r}")


def _vote(
    gov: GovState, econ: EconState, sender: bytes, body: Value, time_ms: int, apply: bool
) -> tuple[Event, ...]:
    try:
        pid_v, option_v = expect_list(body, 2, "gov_vote")
        pid = expect_int(pid_v, "proposal id", 0, 2**63 - 1)
        option = expect_str(option_v, "option", 16)
    except CodecError as exc:
        raise RejectedError(f"malformed gov_vote: {exc}") from None
    if option not in OPTIONS:
        raise RejectedError(f"vote option {option!r} is not one of {OPTIONS}")
    proposal = gov.proposals.get(pid)
    if proposal is None:
        raise RejectedError(f"no proposal {pid}")
    if proposal.status != "voting" or time_ms > proposal.voting_end_ms:
        raise RejectedError(
            f"voting on proposal {pid} ended at chain time {proposal.voting_end_ms} ms"
        )
    if econ.ledger.stake(sender) == 0:
        raise RejectedError("voter has no bonded stake")
    if apply:
        proposal.votes[sender] = option
    return (
        Event("gov_vote", (("proposal", str(pid)), ("voter", sender.hex()), ("option", option))),
    )


def tally(proposal: Proposal, econ: EconState) -> Tally:
    sums = dict.fromkeys(OPTIONS, 0)
    for voter in sorted(proposal.votes):
        sums[proposal.votes[voter]] += econ.ledger.stake(voter)
    return Tally(sums["yes"], sums["no"], sums["abstain"], sums["veto"], econ.ledger.total_bonded())


def verdict(t: Tally, econ: EconState) -> str:
    params = econ.params
    voted = t.yes + t.no + t.abstain + t.veto
    if t.total_bonded == 0 or voted * 1000 < params.gov_quorum_permille * t.total_bonded:
        return "no_quorum"
    if t.veto * 1000 > params.gov_veto_permille * voted:
        return "vetoed"
    decisive = t.yes + t.no + t.veto
    if decisive and t.yes * 1000 > params.gov_threshold_permille * decisive:
        return "passed"
    return "rejected"


def end_block(
    gov: GovState, econ: EconState, fl_params: Params, height: int, time_ms: int
) -> tuple[Params, list[Event]]:
    """Tally every proposal whose period has ended by chain time `time_ms` (block `height`'s);
    returns the (new) FL params."""
    events: list[Event] = []
    due: Sequence[Proposal] = [p for p in gov.voting() if p.voting_end_ms <= time_ms]
    for proposal in due:
        proposal.tally = tally(proposal, econ)
        status = verdict(proposal.tally, econ)
        if status == "passed":
            try:
                fl_params = _execute(econ, fl_params, proposal.content, height)
                proposal.note = f"executed at height {height}"
            except RejectedError as exc:
                status = "failed"
                proposal.note = f"not executed: {exc}"
        burn = status == "vetoed" or (status == "no_quorum" and econ.params.gov_burn_no_quorum == 1)
        if burn:
            econ.ledger.burn_deposit(proposal.deposit)
        else:
            econ.ledger.refund_deposit(proposal.proposer, proposal.deposit)
        proposal.status = status
        events.append(
            Event(
                "gov_proposal_closed",
                (
                    ("proposal", str(proposal.id)),
                    ("status", status),
                    ("content", proposal.content.summary()[:120]),
                    ("deposit", "burned" if burn else "refunded"),
                    ("yes", str(proposal.tally.yes)),
                    ("no", str(proposal.tally.no)),
                    ("abstain", str(proposal.tally.abstain)),
                    ("veto", str(proposal.tally.veto)),
                    ("total_bonded", str(proposal.tally.total_bonded)),
                ),
            )
        )
    return fl_params, events


def _execute(econ: EconState, fl_params: Params, content: Content, height: int) -> Params:
    """Apply a passed proposal; raises RejectedError (and changes nothing) if it cannot."""
    match content.kind:
        case "param":
            updated = apply_change(ParamSet(fl_params, econ.params), content.name, content.value)
            econ.params = updated.econ
            return updated.fl
        case "validator_admit":
            record = econ.validators.get(content.key)
            if record is not None and record.tombstoned:
                raise RejectedError("validator was tombstoned during the vote")
            validators.admit(econ, content.key, height)
        case "validator_remove":
            validators.remove(econ, content.key)
        case "client_ban":
            clients.set_banned(econ, content.key, True)
        case "client_unban":
            clients.set_banned(econ, content.key, False)
        case "client_admit":
            clients.set_admitted(econ, content.key, True)
        case "client_remove":
            clients.set_admitted(econ, content.key, False)
        case _:
            pass  # text: the record is the effect
    return fl_params
