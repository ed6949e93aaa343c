"""e2e runner for the docker-compose testnet, modelled on CometBFT's test/e2e runner.

Theory of operation:
1. `up`: start docker-compose.yml under its own project name, with host ports picked free on
   127.0.0.1, from the image scripts/docker/build_image.sh built.
2. `wait`: every validator reaches --heights and the chain closes --fl-rounds FL rounds.
3. `perturb`: one validator at a time is disconnected, killed, paused or restarted.  While it
   is out, the other three (3/4 of the power > 2/3) must keep committing; once healed it must
   reach the height the others had at heal time within --catchup-s.  Then one honest FL client
   is killed and restarted and must submit again.
4. `check`: over RPC, every node has identical headers at every height, each block's
   resulting app hash is the next header's AppHash, every node holds the same model for the
   same version, and committed transactions are queryable on every node; over the logs, every
   validator logged committed blocks and no traceback, every client submitted updates.
5. `down -v` (unless --keep); on any failure the containers' logs are saved to build/e2e/.

Each check prints PASS/FAIL with its problems, and the run ends with the plain line
`e2e: N passed, M failed`; the exit status is 0 only when nothing failed.
"""

import argparse
import os
import re
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e import checks
from tests.e2e.compose import Compose, ComposeError, compose_command, docker, health, state
from tests.e2e.perturb import KINDS, Perturbation
from tests.e2e.rpc import NodeRpc, RpcError

REPO = Path(__file__).resolve().parents[2]
VALIDATORS = tuple(f"validator{i}" for i in range(4))
POLL_S = 0.5
RECORD_ATTEMPTS = 10  # x POLL_S: longer than a few blocks, far shorter than a round
# One perturbation per validator, as CometBFT's manifests spread them over nodes.
PLAN = tuple(zip(KINDS, VALIDATORS, strict=True))
REQUIRED_VALIDATOR_EVENTS = ("block_committed",)
CLIENT_LINE = re.compile(r": round \d+ model v\d+ .* update (submitted|refused)")
TXS_SAMPLED_MAX = 40


def say(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(slots=True)
class Report:
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, list[str]]] = field(default_factory=list)

    def check(self, name: str, problems: list[str]) -> bool:
        if problems:
            self.failed.append((name, problems))
            say(f"FAIL {name}")
            for problem in problems[:20]:
                print(f"       {problem}", flush=True)
            if len(problems) > 20:
                print(f"       ... and {len(problems) - 20} more", flush=True)
            return False
        self.passed.append(name)
        say(f"PASS {name}")
        return True

    def summary(self) -> str:
        return f"e2e: {len(self.passed)} passed, {len(self.failed)} failed"


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now on 127.0.0.1 (released before compose binds them)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until predicate() held, or None after timeout_s."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            return None
        time.sleep(POLL_S)


class Testnet:
    def __init__(self, compose: Compose, rpc_ports: list[int]) -> None:
        self.compose = compose
        self.nodes = {
            name: NodeRpc(name, f"http://127.0.0.1:{port}")
            for name, port in zip(VALIDATORS, rpc_ports, strict=True)
        }

    def heights(self, names: tuple[str, ...] = VALIDATORS) -> dict[str, int | None]:
        return {name: self.nodes[name].height() for name in names}

    def min_height(self, names: tuple[str, ...] = VALIDATORS) -> int | None:
        values = list(self.heights(names).values())
        return None if any(v is None for v in values) else min(v for v in values if v is not None)

    def fl_rounds(self) -> int | None:
        rounds = []
        for node in self.nodes.values():
            status = node.status()
            if status is None or not isinstance(status.get("fl_round"), int):
                return None
            rounds.append(int(status["fl_round"]))
        return min(rounds)


def start(args: argparse.Namespace) -> tuple[Testnet, Compose]:
    ports = free_ports(2 * len(VALIDATORS))
    env = dict(os.environ)
    env["FEDCHAIN_IMAGE"] = args.image
    for i in range(len(VALIDATORS)):
        env[f"FEDCHAIN_RPC_PORT_{i}"] = str(ports[2 * i])
        env[f"FEDCHAIN_METRICS_PORT_{i}"] = str(ports[2 * i + 1])
    compose = Compose(
        project=args.project,
        file=REPO / "docker-compose.yml",
        env=env,
        command=tuple(compose_command()),
    )
    return Testnet(compose, ports[0::2]), compose


def wait_for_progress(net: Testnet, report: Report, args: argparse.Namespace) -> bool:
    say(f"waiting for every validator to reach height {args.heights}")
    took = wait_until(lambda: (net.min_height() or 0) >= args.heights, args.start_timeout_s)
    if not report.check(
        f"all validators reach height {args.heights}",
        [] if took is not None else [f"heights after {args.start_timeout_s} s: {net.heights()}"],
    ):
        return False
    say(f"heights {net.heights()} after {took:.1f} s")
    containers = {name: net.compose.container(name) for name in VALIDATORS}
    healthy = wait_until(
        lambda: all(health(c) == "healthy" for c in containers.values()), args.health_timeout_s
    )
    report.check(
        "docker HEALTHCHECK reports every validator healthy",
        []
        if healthy is not None
        else [f"{name}: {health(c)}" for name, c in containers.items() if health(c) != "healthy"],
    )
    say(f"waiting for {args.fl_rounds} FL rounds")
    took = wait_until(lambda: (net.fl_rounds() or 0) >= args.fl_rounds, args.rounds_timeout_s)
    return report.check(
        f"chain reaches FL round {args.fl_rounds}",
        [] if took is not None else [f"fl_round stuck at {net.fl_rounds()}"],
    )


def perturb_validator(
    net: Testnet, report: Report, kind: str, victim: str, args: argparse.Namespace
) -> None:
    others = tuple(n for n in VALIDATORS if n != victim)
    container = net.compose.container(victim)
    perturbation = Perturbation(kind, victim, container)
    before = net.min_height(others) or 0
    say(f"{kind} {victim} at height {before}")
    perturbation.apply()
    report.check(f"{kind} {victim}: took effect", perturbation.took_effect())
    if kind != "restart":
        # Liveness without the victim: 3 of 4 equal validators hold > 2/3 of the power.
        target = before + args.hold_heights
        took = wait_until(lambda: (net.min_height(others) or 0) >= target, args.hold_timeout_s)
        report.check(
            f"{kind} {victim}: the other validators keep committing",
            [] if took is not None else [f"others stuck at {net.heights(others)}"],
        )
    perturbation.heal()
    heights = [h for h in net.heights(others).values() if h is not None]
    goal = max(heights) if heights else before
    took = wait_until(lambda: (net.nodes[victim].height() or 0) >= goal, args.catchup_s)
    if took is not None:
        say(f"{victim} back at height >= {goal} after {took:.1f} s")
    report.check(
        f"{kind} {victim}: caught up to height {goal} within {args.catchup_s:.0f} s",
        checks.caught_up(victim, took, args.catchup_s),
    )


def client_lines(container: str, compose: Compose) -> int:
    return sum(1 for line in compose.logs(container) if CLIENT_LINE.search(line))


def perturb_client(net: Testnet, report: Report, args: argparse.Namespace) -> None:
    container = net.compose.containers("client")[0]
    submitted = client_lines(container, net.compose)
    say(f"kill client {container[:12]} (it logged {submitted} submissions)")
    docker("kill", container)
    problems = []
    if state(container) != "exited":
        problems.append(f"client {container[:12]} is {state(container)} after kill")
    docker("start", container)
    took = wait_until(
        lambda: client_lines(container, net.compose) > submitted, args.client_timeout_s
    )
    if took is None:
        problems.append(f"client did not submit again within {args.client_timeout_s:.0f} s")
    else:
        say(f"client submitted again {took:.1f} s after restart")
    report.check("kill client: restarted client submits again", problems)


def check_chain(net: Testnet, report: Report, args: argparse.Namespace) -> None:
    # Let everyone move on past the last perturbation before reading the chain.
    start_height = net.min_height() or 0
    wait_until(
        lambda: (net.min_height() or 0) >= start_height + args.hold_heights, args.hold_timeout_s
    )
    top = net.min_height() or 0
    say(f"reading blocks 1..{top} from every validator")
    chains = {}
    problems = []
    for name, node in net.nodes.items():
        try:
            chains[name] = node.blocks(1, top)
        except RpcError as exc:
            problems.append(str(exc))
    for name, blocks in chains.items():
        problems += checks.contiguous(name, blocks)
    report.check(f"every validator serves blocks 1..{top}", problems)
    report.check(f"identical headers at heights 1..{top}", checks.identical_headers(chains))
    report.check(
        "each block's result app hash is the next header's AppHash",
        [p for name, blocks in chains.items() for p in checks.app_hash_chain(name, blocks)],
    )
    check_model(net, report)
    if chains:
        check_txs(net, report, chains[VALIDATORS[0]])


def check_model(net: Testnet, report: Report) -> None:
    problems = []
    try:
        version = min(node.model()[0] for node in net.nodes.values())
        models = {name: node.model(version) for name, node in net.nodes.items()}
        say(f"model version {version}: {sorted(set(models.values()))}")
        if version < 1:
            problems.append("the model never advanced past version 0")
        problems += checks.same_model(models)
    except RpcError as exc:
        problems.append(str(exc))
    report.check("same model hash on every validator", problems)


def check_txs(net: Testnet, report: Report, blocks: list[dict[str, Any]]) -> None:
    located = [(tx, int(b["height"])) for b in blocks for tx in b.get("txs") or []]
    problems = []
    if not located:
        problems.append("no transaction was committed")
    step = max(1, len(located) // TXS_SAMPLED_MAX)
    sample = located[::step][:TXS_SAMPLED_MAX]
    executed = []
    for tx, height in sample:
        answers = {name: node.tx(tx) for name, node in net.nodes.items()}
        problems += checks.tx_queryable(tx, height, answers)
        first = answers[VALIDATORS[0]]
        if first is not None and first.get("code") == 0:
            executed.append(tx)
    say(f"{len(located)} committed txs; queried {len(sample)} on every validator")
    report.check("committed transactions are queryable on every validator", problems)
    # The docker testnet's only txs are FL updates; the app keeps their records for 16 rounds,
    # longer than this run, so every executed one must be there, the same on every node.
    problems = [] if executed else ["no committed tx was executed (code 0)"]
    for tx in executed:
        problems += _same_update_record(net, tx)
    report.check(
        f"FL update records of {len(executed)} executed txs agree on every validator", problems
    )


def _same_update_record(net: Testnet, tx: str) -> list[str]:
    """The nodes are live and a few blocks apart, so a round that closes between two answers
    turns one node's "pending" into "accepted" while another still says "pending" (seen once:
    blocks read up to 239, the round closed at 240).  Ask again until they agree; a real
    divergence does not go away (and the app hashes compared above would already differ)."""
    problems: list[str] = []
    for _ in range(RECORD_ATTEMPTS):
        records = {name: node.update_record(tx) for name, node in net.nodes.items()}
        problems = checks.same_update_record(tx, records)
        if not problems:
            return []
        time.sleep(POLL_S)
    return problems


def check_logs(net: Testnet, report: Report) -> None:
    problems = []
    closed: list[dict[str, Any]] = []
    slashes: list[dict[str, Any]] = []
    for name in VALIDATORS:
        lines = net.compose.logs(net.compose.container(name))
        counts, found = checks.log_events(name, lines, REQUIRED_VALIDATOR_EVENTS)
        problems += found
        closed += checks.events(lines, "fl_round_closed")
        slashes += checks.events(lines, "client_slashed")
        say(f"{name} log: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    report.check("validator logs: committed blocks, no traceback", problems)
    # Slashing needs evidence across rounds (10+), more than this run has; within it the rule
    # must flag the sign-flipper's updates (no reward), and the client killed and restarted
    # above must not be slashed for a second update in one round (it records what it sent).
    flagged = sum(checks.int_field(event, "flagged") for event in closed)
    report.check(
        "the rule flags the attacker's updates (fl_round_closed with flagged > 0)",
        [] if flagged > 0 else [f"{len(closed)} fl_round_closed events, none flagged anything"],
    )
    equivocations = [e for e in slashes if "two different updates" in str(e.get("reason", ""))]
    report.check(
        "no client is slashed for equivocating (the restarted honest client included)",
        [f"client {str(e.get('client'))[:16]} slashed: {e.get('reason')}" for e in equivocations],
    )
    problems = []
    for service in ("client", "attacker"):
        for container in net.compose.containers(service):
            if client_lines(container, net.compose) == 0:
                problems.append(f"{service} {container[:12]} never submitted an update")
    report.check("every FL client (and the attacker) submitted updates", problems)


def save_logs(compose: Compose) -> None:
    out = REPO / "build" / "e2e"
    out.mkdir(parents=True, exist_ok=True)
    for service in ("init", *VALIDATORS, "client", "attacker"):
        try:
            containers = compose.containers(service)
        except ComposeError:
            continue
        for index, container in enumerate(containers):
            (out / f"{service}-{index}.log").write_text("\n".join(compose.logs(container)) + "\n")
    say(f"container logs saved in {out}")


def run(args: argparse.Namespace) -> int:
    report = Report()
    net, compose = start(args)
    try:
        compose.down()
        say(f"compose up (project {args.project}, image {args.image})")
        compose.up()
        if wait_for_progress(net, report, args):
            for kind, victim in PLAN:
                perturb_validator(net, report, kind, victim, args)
            perturb_client(net, report, args)
            check_chain(net, report, args)
            check_logs(net, report)
    except (ComposeError, RpcError, OSError, ValueError, KeyError) as exc:
        report.check("runner completes", [f"{type(exc).__name__}: {exc}"])
        traceback.print_exc()
    finally:
        if report.failed:
            save_logs(compose)
        if args.keep:
            say(f"--keep: testnet left running (docker-compose -p {args.project} down -v)")
        else:
            compose.down()
    print(report.summary(), flush=True)
    return 0 if not report.failed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--image", default=os.environ.get("FEDCHAIN_IMAGE", "fedchain:latest"))
    parser.add_argument("--project", default="fedchain-e2e")
    parser.add_argument("--heights", type=int, default=10, help="heights to reach first")
    parser.add_argument("--fl-rounds", type=int, default=3, help="FL rounds to close first")
    parser.add_argument(
        "--hold-heights", type=int, default=20, help="others' progress while a node is out"
    )
    parser.add_argument("--health-timeout-s", type=float, default=60.0)
    parser.add_argument("--catchup-s", type=float, default=30.0)
    parser.add_argument("--start-timeout-s", type=float, default=180.0)
    parser.add_argument("--rounds-timeout-s", type=float, default=300.0)
    parser.add_argument("--hold-timeout-s", type=float, default=60.0)
    parser.add_argument("--client-timeout-s", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="leave the testnet running")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
