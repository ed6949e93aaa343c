"""Issue 13: a high-round proposal flood against a real 4-validator LocalNet (loopback).

Three attackers at once, all through the real chain handshake (the genesis is public):
  * forgers: fresh stranger identities flooding proposals (full and compact) and votes with
    random signatures at rounds 2^20 .. 2^40 (`huge`), or at rounds that decode but no honest
    node reaches (`far`: peer_round_max < round <= 2^20);
  * garbage: fresh identities flooding undecodable consensus frames;
  * a byzantine validator: validator 3's own node key and validator key (its process stopped),
    flooding correctly signed votes for rounds ahead of the honest ones as fast as it can,
    and dialing again whenever it is cut off.

Each message passes the node's per-peer budget (node/msgbudget.py) right after decoding: rounds
beyond peer_round_max and more messages than a correct peer can send are clearly abusive, and
the 10th such message bans the peer.  The engine then checks height, round bounds, membership
and the signature before the O(round) proposer computation (consensus/engine/engine.py).  The
honest chain must keep committing at (nearly) its unattacked rate, no honest node may move to a
flooded round, every forger, garbage sender and the byzantine validator must be cut off after
at most 10 bad messages, RSS stays bounded, and every node exits 0 on SIGTERM.  Bounded in
count (tests/adversarial/attacks.py) and time (WINDOW_S).

A second test: a stranger's burst of forged votes is banned, and what it still had queued is
purged, not worked off after the ban (each would cost a WAL append and a signature check).
"""

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensus.types import PREVOTE, Vote, encode_message
from node.keys import read_key
from node.localnet import LocalNet
from node.rpc.client import RpcClient, RpcError
from node.wire import ConsensusMsg
from node.wire import encode_message as encode_wire
from tests.adversarial.attacks import (
    RoundFlood,
    byzantine,
    consensus_height,
    forgers,
    net_target,
    stranger,
)
from tests.adversarial.conftest import MiB

pytestmark = [pytest.mark.adversarial, pytest.mark.integration, pytest.mark.timeout(300)]

VALIDATORS = 4
BYZANTINE = 3
HONEST = (0, 1, 2)
WINDOW_S = 12.0
SAMPLE_S = 0.25
# The bound: the offender is cut off within 10 bad messages (a message that does not
# decode costs a severe offence: banned at the second; a round beyond peer_round_max or a
# message beyond the peer's budget is a strike, node/msgbudget.py: banned at the 10th).
BAD_MESSAGES_MAX = 10
# Honest rounds: validator 3 is down, so its turns as proposer time out into round 1 (rarely 2);
# a node that moved to a flooded round would be at >= 65 (the byzantine's nearest far round).
HONEST_ROUND_MAX = 8
RSS_GROWTH_MAX = 96 * MiB
RATE_KEPT_MIN = 0.70
# The stranger's burst of forged votes, far beyond any peer's budget (the old shell queued up to
# 2,000 of them per peer and checked each after the ban).
FORGED_BURST = 1_000
# Offences logged for a peer after its ban: only what was already being handled in that turn.
OFFENCES_AFTER_BAN_MAX = 2


async def status(net: LocalNet, i: int) -> dict[str, object]:
    async with RpcClient(net.rpc_url(i), timeout_ms=5_000) as client:
        return await client.status()


async def height_of(net: LocalNet, i: int) -> int:
    return int(str((await status(net, i))["height"]))


def records(log: Path) -> Iterator[dict[str, Any]]:
    """The node's own log, one JSON record per line (anything else skipped)."""
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def penalized_peers(log: Path) -> set[str]:
    """Every peer the node counted an offence against."""
    return {str(r.get("peer")) for r in records(log) if r.get("event") == "peer_misbehaved"}


def purged(log: Path, peer: str) -> int:
    """Queued messages of `peer` the node dropped when it banned it (consensus_peer_cut)."""
    return sum(
        int(r.get("purged", 0))
        for r in records(log)
        if r.get("event") == "consensus_peer_cut" and r.get("peer") == peer
    )


def offences_after_ban(log: Path, peer: str) -> int:
    """Offences the node still counted for `peer` after its first ban."""
    banned = False
    after = 0
    for record in records(log):
        if record.get("peer") != peer:
            continue
        if record.get("event") == "peer_banned":
            banned = True
        elif banned and record.get("event") == "peer_misbehaved":
            after += 1
    return after


def bad_messages_before_ban(log: Path, peer: str) -> tuple[int, bool]:
    """Offences the node counted for `peer` before banning it, and whether it did."""
    count = 0
    for record in records(log):
        if record.get("peer") != peer:
            continue
        if record.get("event") == "peer_misbehaved":
            count += 1
        elif record.get("event") == "peer_banned":
            return count, True
    return count, False


def crashes(log: Path) -> list[str]:
    return [
        line[:300]
        for line in log.read_text(errors="replace").splitlines()
        if "Traceback" in line or "_crashed" in line or "handler_failed" in line
    ]


async def test_a_high_round_flood_neither_stalls_nor_moves_the_honest_chain(
    tmp_path: Path,
) -> None:
    net = LocalNet(tmp_path, validators=VALIDATORS, app="kv")
    net.generate()
    net.start_all()
    codes: dict[int, int | None] = {}
    try:
        async with RpcClient(net.rpc_url(0)) as client:
            await client.wait_for_height(3, 90_000)
        # Validator 3 turns byzantine: its honest process goes, its keys stay with the attacker.
        codes[BYZANTINE] = await asyncio.to_thread(net.stop, BYZANTINE)
        node_key = read_key(net.home(BYZANTINE).node_key_file)
        validator_key = read_key(net.home(BYZANTINE).validator_key_file)
        targets = [net_target(net, i) for i in HONEST]

        # The unattacked rate, with the same three validators.
        await asyncio.sleep(2.0)
        start = await height_of(net, 0)
        await asyncio.sleep(WINDOW_S)
        before = await height_of(net, 0) - start
        rss_before = {t.index: t.rss for t in targets}

        first = await status(net, 0)
        seen = {"height": int(str(first["consensus_height"])), "round": int(str(first["round"]))}
        rounds_seen = {i: 0 for i in HONEST}
        rss_peak = dict(rss_before)
        flood = RoundFlood()
        stop = asyncio.Event()

        async def sample() -> None:
            """The honest nodes' round and RSS, and the height the attackers aim at."""
            while not stop.is_set():
                for i in HONEST:
                    try:
                        st = await status(net, i)
                    except (RpcError, OSError, TimeoutError):
                        continue
                    round_ = int(str(st["round"]))
                    rounds_seen[i] = max(rounds_seen[i], round_)
                    seen["height"] = int(str(st["consensus_height"]))
                    seen["round"] = round_
                for t in targets:
                    rss_peak[t.index] = max(rss_peak[t.index], t.rss)
                await asyncio.sleep(SAMPLE_S)

        sampler = asyncio.create_task(sample())
        attackers = [
            asyncio.create_task(forgers(targets, flood, stop)),
            asyncio.create_task(
                byzantine(
                    targets,
                    node_key,
                    validator_key,
                    lambda: seen["height"],
                    lambda: seen["round"],
                    flood,
                    stop,
                    frames_max=10_000_000,
                    redial=True,
                )
            ),
        ]
        try:
            start = await height_of(net, 0)
            await asyncio.sleep(WINDOW_S)
            during = await height_of(net, 0) - start
        finally:
            stop.set()
            await asyncio.gather(*attackers, return_exceptions=False)
            await sampler
        final_rounds = {i: int(str((await status(net, i))["round"])) for i in HONEST}
    finally:
        codes.update(await asyncio.to_thread(net.stop_all))

    kept = during / before if before else 0.0
    print(
        f"\nblocks in {WINDOW_S:.0f} s: {before} unattacked, {during} under the flood "
        f"({kept:.0%} kept); byzantine votes sent {flood.byzantine_sent}"
    )
    print(f"RSS MiB before {({i: r // MiB for i, r in rss_before.items()})}, "
          f"peak {({i: r // MiB for i, r in rss_peak.items()})}")  # fmt: skip
    print(f"highest round seen per honest node {rounds_seen}; exit codes {codes}")
    for o in flood.offenders:
        bad, banned = bad_messages_before_ban(net.log_file(o.target), o.peer_id)
        cut = "never" if o.disconnected_after_s is None else f"{o.disconnected_after_s:.2f} s"
        print(f"  {o.mode:8s} at node{o.target}: sent {o.sent}, cut off after {cut}, "
              f"offences counted before the ban {bad} (banned {banned})")  # fmt: skip
    assert flood.errors == [], flood.errors

    # The chain went on under the flood.  The rate is compared in the same run; on a shared,
    # loaded 2-core machine a window's rate swings, so a drop below RATE_KEPT_MIN needs the
    # chain to also have lost more than a few blocks to count.
    assert during >= 3, (before, during)
    assert during >= RATE_KEPT_MIN * before or before - during <= 4, (before, during)
    # Nobody moved to a flooded round (the byzantine's signed far rounds included).
    assert max(rounds_seen.values()) <= HONEST_ROUND_MAX, rounds_seen
    assert max(final_rounds.values()) <= HONEST_ROUND_MAX, final_rounds
    # Every forging and garbage peer was cut off, after few bad messages.
    assert {o.mode for o in flood.offenders} == {"huge", "far", "garbage"}
    for o in flood.offenders:
        assert o.disconnected_after_s is not None, o
        bad, banned = bad_messages_before_ban(net.log_file(o.target), o.peer_id)
        assert banned, o
        assert bad <= BAD_MESSAGES_MAX, (o, bad)
    # The byzantine validator's signed votes, as fast as it can sign them, are more than any
    # correct validator sends: every honest node cut it off after at most 10 of them beyond its
    # budget (each signed vote alone is not an offence: a far-ahead round may be a partition's).
    print(f"  byzantine: sent {flood.byzantine_sent}, cut off {flood.byzantine_cuts}")
    assert flood.byzantine_sent > 0
    assert {c.target for c in flood.byzantine_cuts} == {t.index for t in targets}
    for t in targets:
        bad, banned = bad_messages_before_ban(net.log_file(t.index), flood.byzantine_peer_id)
        assert banned, t.index
        assert bad <= BAD_MESSAGES_MAX, (t.index, bad)
    # The budget never struck an honest validator: their relays while validator 3's rounds
    # time out (its own messages, others' votes, the previous height's commit) fit it.
    honest_ids = {str(t.peer_id) for t in targets}
    for t in targets:
        struck = penalized_peers(net.log_file(t.index)) & honest_ids
        assert struck == set(), (t.index, struck)
    # Memory stayed bounded, and nothing crashed: every node exits 0 on SIGTERM.
    for i in HONEST:
        assert rss_peak[i] - rss_before[i] <= RSS_GROWTH_MAX, (i, rss_before, rss_peak)
        assert crashes(net.log_file(i)) == [], crashes(net.log_file(i))[:3]
    assert codes == {i: 0 for i in range(VALIDATORS)}, codes


def forged_vote(chain_id: str, height: int, validators: list[bytes], rng: random.Random) -> bytes:
    """A prevote for the height being decided, claiming an honest validator, signature random."""
    vote = Vote(PREVOTE, height, rng.randrange(3), rng.randbytes(32), rng.choice(validators),
                rng.randbytes(64))  # fmt: skip
    return encode_wire(ConsensusMsg(encode_message(vote)))


async def test_a_banned_peers_queued_messages_are_purged_not_worked_off(tmp_path: Path) -> None:
    net = LocalNet(tmp_path, validators=VALIDATORS, app="kv")
    net.generate()
    net.start_all()
    codes: dict[int, int | None] = {}
    try:
        async with RpcClient(net.rpc_url(0)) as client:
            await client.wait_for_height(3, 90_000)
        # Two of four validators stop: the chain halts at one height, so every forged vote for
        # it stays current (each costs a WAL append and a signature check) however long the
        # node takes to get to it.
        for i in (2, 3):
            codes[i] = await asyncio.to_thread(net.stop, i)
        target = net_target(net, 0)
        await asyncio.sleep(1.0)
        height = await consensus_height(target)
        validators = [v.public_key for v in target.genesis.validators]
        rng = random.Random(12)
        frames = [
            forged_vote(target.chain_id, height, validators, rng) for _ in range(FORGED_BURST)
        ]
        async with stranger(target, "127.14.0.2") as (host, peer):
            offender = str(host.peer_id)
            protocol = f"/fedchain/{target.chain_id}/msg/1.0.0"
            stream = await host.new_stream(peer, [protocol], high=True)
            sent = 0
            for frame in frames:
                if not host.is_connected(peer):
                    break
                await stream.write_frame(frame)
                sent += 1
            for _ in range(100):
                if not host.is_connected(peer):
                    break
                await asyncio.sleep(0.05)
            connected = host.is_connected(peer)
        await asyncio.sleep(2.0)  # anything the node still had queued would be worked off now
        final = await consensus_height(target)
    finally:
        codes.update(await asyncio.to_thread(net.stop_all))
    log = net.log_file(0)
    after = offences_after_ban(log, offender)
    before, banned = bad_messages_before_ban(log, offender)
    print(f"\nforged votes for height {height} sent {sent} of {FORGED_BURST}; offences before "
          f"the ban {before}, after it {after}; purged {purged(log, offender)}")  # fmt: skip
    assert final == height  # the forged votes stayed current throughout
    assert banned
    assert not connected
    # Nothing it had queued was checked after the ban (the old shell worked off every one:
    # hundreds of 'bad signature' offences after the ban).
    assert after <= OFFENCES_AFTER_BAN_MAX, after
    assert crashes(log) == [], crashes(log)[:3]
    assert codes == {i: 0 for i in range(VALIDATORS)}, codes
