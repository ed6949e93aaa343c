"""WAL records and block results round-trip; compact proposals rebuild the header's data_hash."""

import pytest

from consensus.app import BlockInfo, Event, FinalizeResult, Misbehavior, TxResult, VoteInfo
from consensus.codec import encode
from consensus.crypto import PrivateKey, sha256
from consensus.driver.walformat import own_record
from consensus.engine import (
    BlockValidated,
    LastSigned,
    ProposalContent,
    ProposalReceived,
    TimeoutFired,
    VoteReceived,
)
from consensus.errors import CodecError
from consensus.types import PREVOTE, Vote, encode_message, txs_hash, vote_sign_bytes
from node.consensus_shell import compact_data_hash
from node.records import (
    ContentIds,
    LastSignedRecord,
    OwnMessage,
    OwnSigned,
    ProposalIds,
    TxRecord,
    WalRecord,
    compact,
    decode_results,
    decode_wal,
    encode_results,
    encode_wal,
    inflate,
    wal_height,
)
from tests.consensus.harness import make_block, proposal, proposer

KEY = PrivateKey.from_label("v0")


def _vote() -> Vote:
    sig = KEY.sign(vote_sign_bytes("c", PREVOTE, 5, 1, b"\x01" * 32))
    return Vote(PREVOTE, 5, 1, b"\x01" * 32, KEY.public_key, sig)


@pytest.mark.parametrize(
    "record",
    [
        VoteReceived(_vote()),
        TimeoutFired(5, 2, 1),
        ProposalContent(5, 0, 1234, (b"tx1", b"tx2")),
        BlockValidated(5, b"\x02" * 32, False),
        OwnMessage(b"\x92\x01\x02"),
        TxRecord(b"update bytes"),
        ContentIds(5, 0, 1234, (sha256(b"tx1"), sha256(b"tx2"))),
        LastSignedRecord(LastSigned(5, 1, 1, b"bytes").encode()),
    ],
)
def test_wal_records_round_trip(record: WalRecord) -> None:
    assert decode_wal(encode_wal(record)) == record


def test_wal_heights_select_the_current_height() -> None:
    assert wal_height(VoteReceived(_vote())) == 5
    assert wal_height(TimeoutFired(7, 0, 0)) == 7
    assert wal_height(OwnMessage(b"")) is None


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x92\xa3bad\x01", b"\x91\xa7timeout"])
def test_undecodable_wal_records_are_codec_errors(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_wal(data)


def test_block_results_round_trip() -> None:
    info = BlockInfo(
        chain_id="c",
        height=9,
        time_ms=77,
        proposer=KEY.public_key,
        block_hash=b"\x03" * 32,
        last_commit=(VoteInfo(KEY.public_key, 10, True),),
        misbehavior=(Misbehavior("duplicate_vote", KEY.public_key, 8, 10),),
    )
    result = FinalizeResult(
        tx_results=(TxResult(), TxResult(2, "nonce", (Event("e", (("k", "v"),)),))),
        app_hash=b"\x04" * 32,
        events=(Event("fl_round_closed", (("round", "3"),)),),
    )
    decoded = decode_results(encode_results(info, result))
    assert decoded.info == info
    assert decoded.tx_results == ((0, ""), (2, "nonce"))
    assert decoded.app_hash == result.app_hash
    assert [e.kind for e in decoded.events] == ["fl_round_closed", "e"]


def test_compact_hashes_reproduce_the_data_hash() -> None:
    txs = [b"a", b"bb", b"x" * 1000]
    assert compact_data_hash([sha256(t) for t in txs]) == txs_hash(txs)
    assert compact_data_hash([sha256(t) for t in reversed(txs)]) != txs_hash(txs)


TXS = (b"a" * 5000, b"b" * 7, b"c" * 9000)


def _received() -> ProposalReceived:
    return ProposalReceived(proposal(0, make_block(proposer(0), TXS)))


def test_block_txs_become_their_own_records_and_inflate_back() -> None:
    received = _received()
    content = ProposalContent(1, 0, 99, TXS)
    written: list[WalRecord] = []
    for inp in (content, received, VoteReceived(_vote())):
        txs, record = compact(inp)
        written += [TxRecord(tx) for tx in txs] + [record]
    ids = tuple(sha256(tx) for tx in TXS)
    assert written[3] == ContentIds(1, 0, 99, ids)
    assert isinstance(written[7], ProposalIds)
    assert written[7].tx_ids == ids
    assert written[7].proposal.block.txs == ()
    assert written[7].proposal.block.id() == received.proposal.block.id()
    on_disk = [decode_wal(encode_wal(r)) for r in written]
    assert inflate(on_disk) == [content, received, VoteReceived(_vote())]
    assert wal_height(written[7]) == received.proposal.height


def test_a_proposal_record_naming_an_unwritten_tx_is_corruption() -> None:
    _, record = compact(_received())
    with pytest.raises(CodecError, match="were not written"):
        inflate([TxRecord(TXS[0]), record])


def test_older_wals_with_txs_inline_still_replay() -> None:
    received = _received()
    old_style = decode_wal(encode_wal(received))  # the "msg" record of a whole proposal
    assert inflate([old_style]) == [received]


def test_a_peer_proposal_record_keeps_its_reception_time() -> None:
    # Proposer-based timestamps: replay must see the same reception time as the live run.
    received = ProposalReceived(proposal(0, make_block(proposer(0), TXS)), received_ms=123_456)
    txs, record = compact(received)
    assert isinstance(record, ProposalIds)
    assert record.received_ms == 123_456
    on_disk = [TxRecord(tx) for tx in txs] + [decode_wal(encode_wal(record))]
    assert inflate(on_disk) == [received]


def test_own_proposals_name_their_txs_and_replay_whole() -> None:
    signed = proposal(0, make_block(proposer(0), TXS))
    txs, record = own_record(signed)
    assert txs == TXS
    assert decode_wal(encode_wal(record)) == record
    assert inflate([TxRecord(tx) for tx in txs] + [record]) == [OwnSigned(signed)]
    assert wal_height(OwnSigned(signed)) == signed.height


def test_older_proposal_and_own_records_still_decode() -> None:
    bare = ProposalIds(proposal(0, make_block(proposer(0), ())), ())
    three_items = encode(["proposal", encode_message(bare.proposal), []])
    assert decode_wal(three_items) == bare  # reception time unknown: -1
    assert decode_wal(encode(["own", b"\x01"])) == OwnMessage(b"\x01")
