"""The reasons a rule gives for not using an update as sent, and which of them are about
distance alone.

Every rule that clips or drops updates by their distance from the round's centre builds its
flag here, so the incentives layer (fl/economics/clients.py) can tell a distance verdict from
a verdict on a client's conduct without a second, encoded field: the reason text is what the
chain already records for operators, and only rules write it.

Why the difference matters: on non-IID data an honest client whose classes the model gets
wrong sends an update far from the median, round after round (digits, Dirichlet 0.1, seed 1:
the three clients holding most of class 8 were clipped below half in 13-22 of 30 rounds).
Distance is no evidence of malice, so it must not cost reputation or count as suspicion; a
clipped update is still used, and paid by its rule score: under history_clip the rule's trust
in it whatever the clip (the kept share is in the flag), under centered_clip the share kept.
"""

from enum import Enum


class Distance(Enum):
    NONE = "none"  # not a distance verdict (a conduct flag, or no flag)
    CLIPPED = "clipped"  # used, shortened to the radius: its score says how much was kept
    UNUSED = "unused"  # left out for its distance: contributes nothing this round


_CLIPPED_PREFIX = "clipped to "
_UNUSED = ("dropped, deviation beyond the drop radius", "not among the closest updates")


def clipped(rule: str, kept_permille: int) -> str:
    return f"{rule}: {_CLIPPED_PREFIX}{kept_permille} permille"


def dropped(rule: str) -> str:
    return f"{rule}: {_UNUSED[0]}"


def not_selected(rule: str) -> str:
    return f"{rule}: {_UNUSED[1]}"


def distance(reason: str) -> Distance:
    """Which distance verdict `reason` is (Distance.NONE for any other flag or for "")."""
    _, _, what = reason.partition(": ")
    if what.startswith(_CLIPPED_PREFIX):
        return Distance.CLIPPED
    if what in _UNUSED:
        return Distance.UNUSED
    return Distance.NONE
