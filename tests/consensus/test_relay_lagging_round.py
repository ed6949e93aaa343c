"""Honest nodes left one round behind by a withholding coalition still make progress.

Campaign seed 9112 (n=7, lock_breaker + silent, faults): byzantine validators sent their
round-1 precommits to one honest node only.  It timed out into round 2 on them; the four others
stayed in round 1 with 4 of the 5 precommits they need to time out, and saw only one validator's
round-2 messages (f+1 = 3 are needed to skip).  Nobody moved again, for ever.  The driver's relay
now re-sends the previous round's precommits (consensus/driver/relay.py).
"""

from consensus.sim.checker import SAFETY
from consensus.sim.runner import run_seed
from consensus.sim.shapes import campaign_config

SEED = 9112


def test_withheld_precommits_do_not_strand_honest_nodes_a_round_behind() -> None:
    config = campaign_config(SEED)
    assert set(config.byzantine) == {"lock_breaker", "silent"}
    result = run_seed(config, SEED)
    assert [v for v in result.violations if v.kind in SAFETY] == []
    assert result.violations == []
    # Not vacuous: the height the old relay stalled at (2) and more were decided after the heal.
    assert result.heights_committed > 5
