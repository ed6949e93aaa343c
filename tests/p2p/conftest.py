"""Shared helpers: real hosts on 127.0.0.1 with ephemeral ports."""

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from node.p2p.config import HostConfig
from node.p2p.host import Host
from node.p2p.peer_id import Identity


def identity(label: str) -> Identity:
    return Identity.from_seed(hashlib.sha256(label.encode()).digest())


@asynccontextmanager
async def hosts(count: int, config: HostConfig | None = None) -> AsyncIterator[list[Host]]:
    async with AsyncExitStack() as stack:
        out: list[Host] = []
        for i in range(count):
            host = await stack.enter_async_context(Host(identity(f"host-{i}"), config))
            await host.listen("127.0.0.1", 0)
            out.append(host)
        yield out


@asynccontextmanager
async def connected_pair(config: HostConfig | None = None) -> AsyncIterator[tuple[Host, Host]]:
    async with hosts(2, config) as (a, b):
        await a.dial(b.addrs()[0])
        await a.identify(b.peer_id)
        yield a, b
