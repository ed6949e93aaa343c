"""The perturbations of CometBFT's e2e runner, applied to one container at a time.

`apply` takes the container out (killed, frozen, cut off the network); `heal` brings it back.
`restart` is one step (docker restart), so its heal is a no-op.  Disconnecting remembers the
container's networks and DNS aliases, because peers dial validators by service name and a
reconnected container without its alias would be unreachable.
"""

from dataclasses import dataclass, field

from tests.e2e.compose import docker, networks, started_at, state

KINDS = ("disconnect", "kill", "pause", "restart")


@dataclass(slots=True)
class Perturbation:
    kind: str
    service: str
    container: str
    _networks: dict[str, list[str]] = field(default_factory=dict)
    _started_at: str = ""

    def apply(self) -> None:
        self._started_at = started_at(self.container)
        match self.kind:
            case "kill":
                docker("kill", self.container)
            case "pause":
                docker("pause", self.container)
            case "disconnect":
                self._networks = networks(self.container)
                for name in sorted(self._networks):
                    docker("network", "disconnect", name, self.container)
            case "restart":
                docker("restart", "--time", "5", self.container)
            case _:
                raise ValueError(f"unknown perturbation {self.kind!r}")

    def took_effect(self) -> list[str]:
        """Problems if the container is not actually out (or, for restart, not restarted)."""
        match self.kind:
            case "kill" | "pause":
                want = "exited" if self.kind == "kill" else "paused"
                got = state(self.container)
                return [] if got == want else [f"{self.service} is {got}, not {want}"]
            case "disconnect":
                left = networks(self.container)
                return [] if not left else [f"{self.service} still on {sorted(left)}"]
            case "restart":
                again = started_at(self.container)
                return [] if again != self._started_at else [f"{self.service} did not restart"]
            case _:
                raise ValueError(f"unknown perturbation {self.kind!r}")

    def heal(self) -> None:
        match self.kind:
            case "kill":
                docker("start", self.container)
            case "pause":
                docker("unpause", self.container)
            case "disconnect":
                for name in sorted(self._networks):
                    # Compose adds the container id as an alias too; docker adds that itself.
                    aliases = [a for a in self._networks[name] if not self.container.startswith(a)]
                    alias_args = [arg for a in aliases for arg in ("--alias", a)]
                    docker("network", "connect", *alias_args, name, self.container)
            case "restart":
                pass
            case _:
                raise ValueError(f"unknown perturbation {self.kind!r}")
