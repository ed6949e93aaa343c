"""A thin, typed wrapper over the compose CLI and `docker` for the e2e runner.

Works with the Compose v2 plugin (`docker compose`) and the v1 tool (`docker-compose`), which is
what Debian ships; every call has a timeout so a wedged engine fails the run instead of hanging
CI.  Containers are addressed by id (`ps -q SERVICE`) so pause/kill/network calls go straight to
`docker`, identical under both compose versions.
"""

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

COMMAND_TIMEOUT_S = 300.0


class ComposeError(Exception):
    """A docker or compose command failed."""


def compose_command() -> list[str]:
    """`docker compose` when the plugin exists, else `docker-compose`."""
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise ComposeError("neither `docker compose` nor `docker-compose` is installed")


def docker(*args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    return _run(["docker", *args], None, timeout_s)


def _run(argv: Sequence[str], env: Mapping[str, str] | None, timeout_s: float) -> str:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, env=env, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise ComposeError(f"{' '.join(argv)}: no answer within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise ComposeError(f"{' '.join(argv)}: exit {done.returncode}: {tail}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Compose:
    project: str
    file: Path
    env: Mapping[str, str]
    command: tuple[str, ...]

    def run(self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        argv = [*self.command, "-p", self.project, "-f", str(self.file), *args]
        return _run(argv, self.env, timeout_s)

    def up(self) -> None:
        self.run("up", "-d", "--no-build")

    def down(self) -> None:
        self.run("down", "-v", "--remove-orphans", "--timeout", "5")

    def containers(self, service: str) -> list[str]:
        return [c for c in self.run("ps", "-q", service).split() if c]

    def container(self, service: str) -> str:
        ids = self.containers(service)
        if len(ids) != 1:
            raise ComposeError(f"{service}: expected one container, found {len(ids)}")
        return ids[0]

    def logs(self, container: str) -> list[str]:
        """Raw stdout+stderr lines of one container (docker logs, no compose prefixes)."""
        done = subprocess.run(
            ["docker", "logs", container],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        return (done.stdout + done.stderr).splitlines()


def networks(container: str) -> dict[str, list[str]]:
    """network name -> the container's aliases on it."""
    raw = json.loads(docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", container))
    return {name: list(info.get("Aliases") or []) for name, info in raw.items()}


def state(container: str) -> str:
    """running, paused, exited, restarting..."""
    return docker("inspect", "--format", "{{.State.Status}}", container).strip()


def started_at(container: str) -> str:
    return docker("inspect", "--format", "{{.State.StartedAt}}", container).strip()


def health(container: str) -> str:
    """The HEALTHCHECK's verdict: starting, healthy, unhealthy (or none)."""
    out = docker(
        "inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", container
    )
    return out.strip() or "none"
