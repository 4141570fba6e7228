"""Room cooling: CRAC efficiency, rack inlet temperatures, facility power and PUE (vectorised).

Equations:

    COP(T_supply)  = 0.0068 T^2 + 0.0008 T + 0.458          (Moore et al., USENIX ATC 2005, T in degC)
    P_cooling      = P_heat / COP(T_supply)                 (all IT electrical power becomes heat)
    T_inlet[rack]  = T_supply + recirc_dc[rack]             (hot-air recirculation raises inlet)
    P_overhead     = overhead_frac * P_IT                   (UPS/PDU conversion losses, lighting)
    PUE            = (P_IT + P_cooling + P_overhead) / P_IT (The Green Grid, WP #49, 2012)

Moore, Chase, Ranganathan & Sharma, "Making Scheduling 'Cool': Temperature-Aware Workload Placement
in Data Centers", USENIX ATC 2005, fit the COP curve to a water-chilled CRAC unit at the HP Utility
Data Center: at 15 degC COP = 2.0, at 25 degC COP = 4.7, so raising the supply temperature makes
cooling much cheaper as long as inlets stay below the servers' limits.

Default overhead: 0.10 of IT power. Power delivery (transformers, UPS double conversion, PDUs) loses
several percent to ~10 % of IT power in typical facilities (Barroso, Clidaras & Hoelzle, "The
Datacenter as a Computer", 3rd ed., 2018, ch. 5); set it per site.

Economiser (optional, airside free cooling): when the outside air is at least
``economiser_approach_dc`` colder than the required supply temperature, the CRAC compressors are off
and only fans run, modelled as ``economiser_fan_frac`` of the heat load (5 % by default, a site
assumption: set it from the air handlers' fan power). Above that threshold the CRAC runs normally; the
partial-economiser band of real plants is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from powerrl.config import spec
from powerrl.errors import ConfigError

MOORE_COP_A = 0.0068  # Moore et al. 2005, COP quadratic coefficient (1/degC^2)
MOORE_COP_B = 0.0008  # Moore et al. 2005, COP linear coefficient (1/degC)
MOORE_COP_C = 0.458  # Moore et al. 2005, COP constant


@dataclass(frozen=True)
class CoolingSpec:
    """Cooling plant and room air flow (YAML-configurable).

    Attributes:
        supply_c: CRAC supply air temperature, degC (ASHRAE recommends 18-27 degC at server inlets).
        recirc_dc: per-rack recirculation temperature rise, degC; one value applies to every rack,
            otherwise one value per rack.
        overhead_frac: non-cooling facility overhead (power delivery losses, lighting) / IT power.
        economiser: whether outside-air free cooling is available.
        economiser_approach_dc: outside air must be this much colder than ``supply_c``, degC.
        economiser_fan_frac: fan power during free cooling as a fraction of the heat load.
    """

    supply_c: float = field(default=18.0, metadata=spec(lo=5.0, hi=35.0, unit="degC"))
    recirc_dc: tuple[float, ...] = field(default=(2.0,), metadata=spec(lo=0.0, hi=30.0, unit="degC"))
    overhead_frac: float = field(default=0.10, metadata=spec(lo=0.0, hi=1.0))
    economiser: bool = False
    economiser_approach_dc: float = field(default=3.0, metadata=spec(lo=0.0, hi=30.0, unit="degC"))
    economiser_fan_frac: float = field(default=0.05, metadata=spec(lo=0.0, hi=1.0))

    def validate(self, path: str = "", source: str | None = None) -> None:
        """Check that ``recirc_dc`` is not empty (called by :func:`powerrl.config.from_dict`)."""
        if not self.recirc_dc:
            raise ConfigError(f"{path}.recirc_dc" if path else "recirc_dc", list(self.recirc_dc),
                              "at least one value (degC)", source)


def crac_cop(supply_c: float | np.ndarray) -> np.ndarray:
    """CRAC coefficient of performance at supply temperature ``supply_c`` (Moore et al. 2005)."""
    t = np.asarray(supply_c, dtype=np.float64)
    return MOORE_COP_A * t * t + MOORE_COP_B * t + MOORE_COP_C


def rack_inlet_c(supply_c: float | np.ndarray, recirc_dc: float | np.ndarray | tuple[float, ...],
                 n_racks: int | None = None) -> np.ndarray:
    """Inlet temperature of each rack, degC: supply plus that rack's recirculation rise.

    Args:
        supply_c: supply temperature, degC (scalar, or shape ``[T]`` for a time series).
        recirc_dc: recirculation rise per rack, degC (one value for all racks, or one per rack).
        n_racks: number of racks; required when ``recirc_dc`` has a single value.

    Returns:
        ``[n_racks]`` (scalar supply) or ``[T, n_racks]``.

    Raises:
        ValueError: ``recirc_dc`` length differs from ``n_racks``.
    """
    rise = np.atleast_1d(np.asarray(recirc_dc, dtype=np.float64))
    if rise.size == 1 and n_racks is not None:
        rise = np.full(n_racks, float(rise[0]))
    elif n_racks is not None and rise.size != n_racks:
        raise ValueError(f"recirc_dc has {rise.size} values but n_racks = {n_racks}; give 1 or {n_racks}")
    supply = np.asarray(supply_c, dtype=np.float64)
    return supply[..., None] + rise


def economiser_active(ambient_c: float | np.ndarray, cooling: CoolingSpec,
                      supply_c: float | np.ndarray | None = None) -> np.ndarray:
    """Whether free cooling carries the load: economiser on and ambient <= supply - approach."""
    supply = cooling.supply_c if supply_c is None else supply_c
    ambient = np.asarray(ambient_c, dtype=np.float64)
    if not cooling.economiser:
        return np.zeros(ambient.shape, dtype=bool)
    return ambient <= np.asarray(supply, dtype=np.float64) - cooling.economiser_approach_dc


def cooling_power_w(heat_w: float | np.ndarray, cooling: CoolingSpec, supply_c: float | np.ndarray | None = None,
                    ambient_c: float | np.ndarray | None = None) -> np.ndarray:
    """Electrical power of the cooling plant removing ``heat_w`` of heat, W.

    Args:
        heat_w: heat load (IT power), W.
        cooling: plant description.
        supply_c: supply temperature, degC; ``None`` = ``cooling.supply_c``.
        ambient_c: outside air temperature, degC, for the economiser; ``None`` = economiser unused.
    """
    supply = cooling.supply_c if supply_c is None else supply_c
    heat = np.asarray(heat_w, dtype=np.float64)
    crac_w = heat / crac_cop(supply)
    if ambient_c is None or not cooling.economiser:
        return crac_w
    free = economiser_active(ambient_c, cooling, supply)
    return np.where(free, heat * cooling.economiser_fan_frac, crac_w)


@dataclass(frozen=True)
class FacilityPower:
    """Facility power split, each field W (arrays broadcast like the inputs), plus PUE.

    Attributes:
        it_w: IT power, W.
        cooling_w: cooling plant power, W.
        overhead_w: other facility overhead (power delivery losses, lighting), W.
        total_w: facility power, W.
        pue: power usage effectiveness, total / IT (dimensionless, >= 1).
    """

    it_w: np.ndarray
    cooling_w: np.ndarray
    overhead_w: np.ndarray
    total_w: np.ndarray
    pue: np.ndarray


def facility_power(it_w: float | np.ndarray, cooling: CoolingSpec, supply_c: float | np.ndarray | None = None,
                   ambient_c: float | np.ndarray | None = None) -> FacilityPower:
    """Facility power and PUE for IT power ``it_w`` (vectorised over any shape).

    PUE is ``nan`` where ``it_w`` is 0 (undefined).
    """
    it = np.asarray(it_w, dtype=np.float64)
    cool = cooling_power_w(it, cooling, supply_c, ambient_c)
    overhead = cooling.overhead_frac * it
    total = it + cool + overhead
    with np.errstate(divide="ignore", invalid="ignore"):
        pue = np.where(it > 0, total / np.where(it > 0, it, 1.0), np.nan)
    return FacilityPower(it_w=it, cooling_w=cool, overhead_w=overhead, total_w=total, pue=pue)
