"""Proposal contents and proposal records, with canonical encodings.

Content (the first element names the kind):
    ["param", name, value]                 change one governable parameter (FL or incentives)
    ["validator_admit", key] / ["validator_remove", key]
    ["client_ban", key] / ["client_unban", key]
    ["client_admit", key] / ["client_remove", key]   the client registry (`client_registry` = 1)
    ["text", title, description]           no effect beyond the record
A proposal's status is "voting" until the end of the first block whose time reaches its
`voting_end_ms`, then one of
"passed", "rejected", "vetoed", "no_quorum", or "failed" (passed, but its change could no longer
be applied at that height, e.g. a parameter relation no longer holds).
"""

from dataclasses import dataclass, field

from consensus.codec import (
    Value,
    expect_bytes,
    expect_int,
    expect_list,
    expect_seq,
    expect_str,
)
from consensus.crypto import PUBLIC_KEY_BYTES
from consensus.errors import CodecError
from fl.errors import RejectedError

CONTENT_KINDS = (
    "param",
    "validator_admit",
    "validator_remove",
    "client_ban",
    "client_unban",
    "text",
    "client_admit",
    "client_remove",
)
OPTIONS = ("yes", "no", "abstain", "veto")
STATUSES = ("voting", "passed", "rejected", "vetoed", "no_quorum", "failed")
TITLE_CHARS_MAX = 100
DESCRIPTION_CHARS_MAX = 256
PARAM_NAME_CHARS_MAX = 64
VOTES_MAX = 1_000_000


@dataclass(frozen=True, slots=True)
class Content:
    kind: str
    name: str = ""  # param name, or title for text
    value: int | str = 0  # param value, or description for text
    key: bytes = b""  # validator/client key

    def encode(self) -> Value:
        match self.kind:
            case "param":
                return ["param", self.name, self.value]
            case "text":
                return ["text", self.name, self.value]
            case _:
                return [self.kind, self.key]

    def summary(self) -> str:
        match self.kind:
            case "param":
                return f"param {self.name} = {self.value!r}"
            case "text":
                return f"text {self.name!r}"
            case _:
                return f"{self.kind} {self.key.hex()[:16]}"


def decode_content(value: Value) -> Content:
    try:
        items = expect_seq(value, "proposal content", 3)
        if not items:
            raise CodecError("proposal content is empty")
        kind = expect_str(items[0], "proposal kind", 32)
        match kind:
            case "param":
                _, name_v, raw = expect_list(items, 3, "param proposal")
                name = expect_str(name_v, "parameter name", PARAM_NAME_CHARS_MAX)
                if isinstance(raw, bool) or not isinstance(raw, int | str):
                    raise CodecError("parameter value must be an integer or a string")
                if isinstance(raw, str):
                    expect_str(raw, "parameter value", PARAM_NAME_CHARS_MAX)
                return Content("param", name=name, value=raw)
            case "text":
                _, title, desc = expect_list(items, 3, "text proposal")
                return Content(
                    "text",
                    name=expect_str(title, "title", TITLE_CHARS_MAX),
                    value=expect_str(desc, "description", DESCRIPTION_CHARS_MAX),
                )
            case (
                "validator_admit"
                | "validator_remove"
                | "client_ban"
                | "client_unban"
                | "client_admit"
                | "client_remove"
            ):
                _, key = expect_list(items, 2, f"{kind} proposal")
                return Content(kind, key=expect_bytes(key, "key", PUBLIC_KEY_BYTES))
            case _:
                raise CodecError(f"unknown proposal kind {kind!r}")
    except CodecError as exc:
        raise RejectedError(f"malformed proposal: {exc}") from None


@dataclass(frozen=True, slots=True)
class Tally:
    yes: int = 0
    no: int = 0
    abstain: int = 0
    veto: int = 0
    total_bonded: int = 0

    def encode(self) -> Value:
        return [self.yes, self.no, self.abstain, self.veto, self.total_bonded]

    @classmethod
    def decode(cls, value: Value) -> "Tally":
        yes, no, abstain, veto, total = expect_list(value, 5, "tally")
        return cls(*(expect_int(v, "tally", 0) for v in (yes, no, abstain, veto, total)))


@dataclass(slots=True)
class Proposal:
    id: int
    proposer: bytes
    content: Content
    deposit: int
    submit_height: int
    voting_end_ms: int  # chain time: tallied at the end of the first block at or past it
    status: str = "voting"
    votes: dict[bytes, str] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)
    note: str = ""  # why it failed, or what it changed

    def summary(self) -> Value:
        return [
            self.id,
            self.content.kind,
            self.content.summary(),
            self.status,
            self.submit_height,
            self.voting_end_ms,
            self.deposit,
            self.proposer,
            self.tally.encode(),
            self.note,
        ]

    def encode(self) -> Value:
        return [
            self.id,
            self.proposer,
            self.content.encode(),
            self.deposit,
            self.submit_height,
            self.voting_end_ms,
            self.status,
            [[k, self.votes[k]] for k in sorted(self.votes)],
            self.tally.encode(),
            self.note,
        ]

    @classmethod
    def decode(cls, value: Value) -> "Proposal":
        pid, proposer, content, deposit, submit, end, status, votes_v, tally, note = expect_list(
            value, 10, "proposal"
        )
        status_s = expect_str(status, "status")
        if status_s not in STATUSES:
            raise CodecError(f"unknown proposal status {status_s!r}")
        try:
            content_v = decode_content(content)
        except RejectedError as exc:
            raise CodecError(str(exc)) from None
        proposal = cls(
            expect_int(pid, "proposal id", 1),
            expect_bytes(proposer, "proposer", PUBLIC_KEY_BYTES),
            content_v,
            expect_int(deposit, "deposit", 0),
            expect_int(submit, "submit height", 0),
            expect_int(end, "voting end time", 0),
            status_s,
            tally=Tally.decode(tally),
            note=expect_str(note, "note", 1024),
        )
        for item in expect_seq(votes_v, "votes", VOTES_MAX):
            voter, option = expect_list(item, 2, "vote")
            option_s = expect_str(option, "vote option")
            if option_s not in OPTIONS:
                raise CodecError(f"unknown vote option {option_s!r}")
            proposal.votes[expect_bytes(voter, "voter", PUBLIC_KEY_BYTES)] = option_s
        return proposal
