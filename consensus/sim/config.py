"""What one simulated run looks like: cluster shape, adversaries, faults, duration."""

from dataclasses import dataclass

from consensus.engine.config import MUTANTS
from consensus.errors import InvariantError

BEHAVIOURS = ("equivocate", "double_vote", "silent", "amnesia")

# A Twins scenario fixes, per round of height 1, which nodes can talk: groups of node indices.
RoundPartitions = tuple[tuple[tuple[int, ...], ...], ...]


@dataclass(frozen=True, slots=True)
class SimConfig:
    validators: int = 4
    # Behaviour of each byzantine validator, taken from the highest indices down.
    byzantine: tuple[str, ...] = ()
    # Validators twin_offset .. twin_offset+twins-1 (mod n) run a second copy of themselves on
    # another network identity: node validators+i copies validator (twin_offset+i) % n.
    twins: int = 0
    twin_offset: int = 0
    duration_ms: int = 300_000
    # Faults (drops, duplicates, long delays, partitions, crashes) only before the heal, which
    # is `liveness_ms` before the end; after it every honest node must commit again.
    faults: bool = True
    liveness_ms: int = 60_000
    block_interval_ms: int = 1_000
    gossip_interval_ms: int = 1_000
    mutant: str = ""
    # Twins: per-round partitions of height 1 (rounds beyond the tuple are fully connected).
    round_partitions: RoundPartitions = ()
    # Stop as soon as every honest node has committed this height (0: run the full duration).
    stop_height: int = 0
    # Share ed25519 verification results across the nodes of a run, keyed by (key, msg, sig).
    verify_cache: bool = True

    def __post_init__(self) -> None:
        if self.validators < 1 or self.twins > self.validators:
            raise InvariantError("sim: need validators >= 1 and twins <= validators")
        if len(self.byzantine) + self.twins > self.validators:
            raise InvariantError("sim: more byzantine validators and twins than validators")
        for b in self.byzantine:
            if b not in BEHAVIOURS:
                raise InvariantError(f"sim: unknown byzantine behaviour {b!r}")
        if self.mutant not in MUTANTS:
            raise InvariantError(f"sim: unknown mutant {self.mutant!r}")
        if self.liveness_ms >= self.duration_ms:
            raise InvariantError("sim: liveness_ms must be shorter than duration_ms")

    def twin_source(self, node: int) -> int:
        """The validator a node runs: itself, or for a twin node the validator it copies."""
        if node < self.validators:
            return node
        return (self.twin_offset + node - self.validators) % self.validators

    @property
    def heal_ms(self) -> int:
        return self.duration_ms - self.liveness_ms

    @property
    def nodes(self) -> int:
        return self.validators + self.twins
