"""Fixtures: a py-libp2p 0.8.1 peer in its own process (see libp2p_peer.py for its config)."""

from collections.abc import AsyncIterator

import pytest

from tests.interop.peer_process import LibP2PPeer


@pytest.fixture
async def pylibp2p() -> AsyncIterator[LibP2PPeer]:
    peer = await LibP2PPeer.start()
    try:
        yield peer
    finally:
        await peer.stop()
