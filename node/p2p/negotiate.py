"""multistream-select 1.0 negotiation over any ReadBuffer + writer (TCP, Noise or a stream).

The dialer pipelines its header with its first proposal; the listener writes its header before
reading, answers `na` to anything it does not serve (including `ls`) and tolerates data that a
lazy dialer sends right after its proposal (it simply stays in the buffer for the handler).
"""

from collections.abc import Awaitable, Callable, Container, Sequence

from node.p2p.buffer import ReadBuffer
from node.p2p.errors import DecodeError, ProtocolNotSupported
from node.p2p.multistream import NA, PROTOCOL_ID, decode_message, encode_message

Writer = Callable[[bytes], Awaitable[None]]


async def read_message(inbox: ReadBuffer) -> str:
    return await inbox.read_parsed(decode_message)


async def select_outbound(inbox: ReadBuffer, write: Writer, protocols: Sequence[str]) -> str:
    if not protocols:
        raise ProtocolNotSupported("no protocol to propose")
    await write(encode_message(PROTOCOL_ID) + encode_message(protocols[0]))
    header = await read_message(inbox)
    if header != PROTOCOL_ID:
        raise DecodeError(f"unexpected multistream header {header[:64]!r}")
    for i, protocol in enumerate(protocols):
        if i:
            await write(encode_message(protocol))
        answer = await read_message(inbox)
        if answer == protocol:
            return protocol
        if answer != NA:
            raise DecodeError(f"unexpected multistream answer {answer[:64]!r}")
    raise ProtocolNotSupported(f"peer supports none of {list(protocols)}")


async def select_inbound(
    inbox: ReadBuffer, write: Writer, supported: Container[str], attempts_max: int
) -> str:
    await write(encode_message(PROTOCOL_ID))
    header = await read_message(inbox)
    if header != PROTOCOL_ID:
        raise DecodeError(f"unexpected multistream header {header[:64]!r}")
    for _ in range(attempts_max):
        proposal = await read_message(inbox)
        if proposal in supported:
            await write(encode_message(proposal))
            return proposal
        await write(encode_message(NA))
    raise DecodeError("too many multistream proposals")
