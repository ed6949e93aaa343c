"""What one simulated run looks like: cluster shape, adversaries, faults, duration."""

import random
from dataclasses import dataclass, field

from consensus.engine.config import MUTANTS, EngineConfig
from consensus.errors import InvariantError
from consensus.sim.byzantine import BEHAVIOURS, TARGETED

__all__ = ["BEHAVIOURS", "TARGETED", "RoundPartitions", "SimConfig", "engine_config"]

# Validator-set changes through the app: every VALIDATOR_UPDATE_EVERY heights the block carries
# one `val:` tx (effective at H+2); powers stay in 1..VALIDATOR_POWER_MAX and an honest
# validator may be removed (power 0) and re-added later.
VALIDATOR_UPDATE_EVERY = 5
VALIDATOR_POWER_MAX = 10
VALIDATOR_SCHEDULE_HEIGHTS_MAX = 20_000

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
    # Voting power of each validator at genesis (empty: all 1).
    powers: tuple[int, ...] = ()
    # Change powers (and remove / re-add honest validators) through the app's `val:` txs; the
    # faulty keys always keep less than 1/3 of the power.  Off: the same txs re-assert powers.
    validator_changes: bool = False
    # Kill nodes at WAL append, fsync and store boundaries (the driver's crash points).
    crash_points: bool = False
    # Force long heights: before the heal, one height loses every proposal of its first
    # `stall_rounds` rounds (each round then times out), on top of the seed's other faults.
    stall_rounds: int = 0
    # After the heal (GST) every message takes between 3/4 of this and all of it: set above the
    # first rounds' timeouts, only timeouts that grow with the round let a height through.
    after_heal_delay_ms_max: int = 20
    # Before the heal, a node that decides may be cut off from everyone for a while (the
    # network adversary's best moment: the others have not decided yet).
    isolate_deciders: bool = False
    # Block sync between nodes; off, a node that missed a decision must catch up through
    # consensus gossip alone (old rounds' precommits), as Algorithm 1 promises.
    block_sync: bool = True
    # Consensus catch-up instead of block sync (CometBFT's consensus reactor for a lagging
    # peer): a peer ahead sends the lagging node the proposal that carried the block it
    # committed at the node's height and that block's commit as precommit votes, never a
    # ready-made decision.  A node that left the deciding round must decide on an old round's
    # precommits (L49 in any round).  Falls back to a block when the proposal cannot be used
    # (the node holds another proposal of that round: an equivocating proposer).
    catch_up: bool = False
    _schedule: dict[int, tuple[int, int]] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if self.validators < 1 or self.twins > self.validators:
            raise InvariantError("sim: need validators >= 1 and twins <= validators")
        if self.powers and (
            len(self.powers) != self.validators
            or any(not 1 <= p <= VALIDATOR_POWER_MAX for p in self.powers)
        ):
            raise InvariantError(
                f"sim: powers needs one power in 1..{VALIDATOR_POWER_MAX} per validator"
            )
        if self.stall_rounds < 0 or self.after_heal_delay_ms_max < 1:
            raise InvariantError("sim: stall_rounds >= 0 and after_heal_delay_ms_max >= 1")
        if len(self.byzantine) + self.twins > self.validators:
            raise InvariantError("sim: more byzantine validators and twins than validators")
        for b in self.byzantine:
            if b not in BEHAVIOURS and b not in TARGETED:
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

    def after_heal_delay_ms(self, rng: random.Random) -> int:
        top = self.after_heal_delay_ms_max
        return rng.randint(top - top // 4, top)

    def power_of(self, validator: int) -> int:
        return self.powers[validator] if self.powers else 1

    @property
    def faulty_validators(self) -> tuple[int, ...]:
        """Byzantine validators (the highest indices) and twinned ones."""
        n = self.validators
        faulty = {n - 1 - i for i in range(len(self.byzantine))}
        faulty |= {self.twin_source(i) for i in range(n, self.nodes)}
        return tuple(sorted(faulty))

    def validator_schedule(self) -> dict[int, tuple[int, int]]:
        """height -> (validator, new power) of the `val:` tx every block of that height carries.

        A pure function of the config, computed once: each change is kept only if afterwards
        the faulty validators still hold less than 1/3 of the power and someone is left."""
        if self._schedule or not self.validator_changes:
            return self._schedule
        rng = random.Random(f"validators/{self.validators}/{self.powers}/{self.byzantine}")
        powers = [self.power_of(i) for i in range(self.validators)]
        faulty = self.faulty_validators
        for height in range(
            VALIDATOR_UPDATE_EVERY, VALIDATOR_SCHEDULE_HEIGHTS_MAX, VALIDATOR_UPDATE_EVERY
        ):
            who = rng.randrange(self.validators)
            if who not in faulty and rng.randrange(4) == 0:
                power = 0 if powers[who] else rng.randint(1, VALIDATOR_POWER_MAX)
            else:
                power = rng.randint(1, VALIDATOR_POWER_MAX)
            trial = [*powers[:who], power, *powers[who + 1 :]]
            total = sum(trial)
            if 3 * sum(trial[i] for i in faulty) >= total or sum(1 for p in trial if p) < 2:
                continue
            powers = trial
            self._schedule[height] = (who, power)
        return self._schedule

    def validator_update_txs(self, height: int, keys: list[bytes]) -> list[bytes]:
        """The `val:` txs every proposer of `height` includes (txs, not a side channel: the
        change goes through the app and takes effect at height + 2)."""
        if self.validators < 2:
            return []
        if not self.validator_changes:
            if height % 7:
                return []
            who = height % self.validators  # re-assert a power: the H+2 path, no change
            return [b"val:" + keys[who].hex().encode() + f":{self.power_of(who)}".encode()]
        change = self.validator_schedule().get(height)
        if change is None:
            return []
        who, power = change
        return [b"val:" + keys[who].hex().encode() + f":{power}".encode()]

    @property
    def heal_ms(self) -> int:
        return self.duration_ms - self.liveness_ms

    @property
    def nodes(self) -> int:
        return self.validators + self.twins


def engine_config(config: SimConfig) -> EngineConfig:
    """The engine settings of every simulated node (short timeouts: rounds are cheap in
    virtual time), the mutant included."""
    return EngineConfig(
        propose_timeout_ms=1_000,
        propose_timeout_delta_ms=500,
        prevote_timeout_ms=500,
        prevote_timeout_delta_ms=250,
        precommit_timeout_ms=500,
        precommit_timeout_delta_ms=250,
        mutant=config.mutant,
    )
