"""One namespace for every governable parameter: the FL table (fl/params.py) and the
incentives table (fl/economics/params.py).  Names are disjoint, so a name picks its table."""

from dataclasses import dataclass

from fl import params as fl_params
from fl.economics import params as econ_params
from fl.economics.params import EconParams
from fl.errors import RejectedError
from fl.params import Params


@dataclass(frozen=True, slots=True)
class ParamSet:
    fl: Params
    econ: EconParams


def apply_change(current: ParamSet, name: str, value: int | str) -> ParamSet:
    """The parameter set with `name` = `value`, or RejectedError (unknown name, bad value)."""
    if econ_params.is_econ_param(name):
        return ParamSet(current.fl, econ_params.with_value(current.econ, name, value))
    if name in {spec.name for spec in fl_params.GOVERNABLE}:
        return ParamSet(fl_params.with_value(current.fl, name, value), current.econ)
    raise RejectedError(f"unknown parameter {name!r}")


def names() -> list[str]:
    return sorted(
        [*(s.name for s in fl_params.GOVERNABLE), *(s.name for s in econ_params.GOVERNABLE)]
    )
