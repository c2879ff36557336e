"""The score formulas, one place for each; units in every name.

For a run with ``n`` inferences, top-1 accuracy ``a`` (a fraction) and energy ``E`` joules:

- energy in watt-hours: ``E / 3600``;
- energy per inference in microwatt-hours: ``E / 3.6e-3 / n`` (1 uWh = 3.6e-3 J);
- composite score (the reference paper's): ``a**2 / (energy per inference in mWh)``:
  MobileNetV3 Small on an A100, ``0.681**2 / 0.009 = 51.5``;
- Canziani et al.: top-1 in percent per million parameters;
- NetScore (Wong, 2018): ``20 * log10(a_pct**2 / sqrt(params_M * macs_M))``, with ``a_pct`` the
  top-1 in percent, ``params_M`` parameters in millions and ``macs_M`` multiply-accumulates per
  inference in millions (alpha = 2, beta = gamma = 0.5, as Wong proposes). The paper's printed
  NetScore column does not follow from this definition (see ``paper/README.md``).
"""

from __future__ import annotations

import math

JOULES_PER_UWH = 3.6e-3
JOULES_PER_WH = 3600


def watt_hours(joules: float) -> float:
    """Energy in watt-hours."""
    return joules / JOULES_PER_WH


def uwh_per_inference(joules: float, inferences: int) -> float:
    """Energy per inference in microwatt-hours."""
    if inferences <= 0:
        raise ValueError("a run needs at least one inference")
    return joules / JOULES_PER_UWH / inferences


def composite(accuracy: float, uwh: float) -> float:
    """``accuracy**2 / mWh per inference``; accuracy is a fraction, and the energy a finite
    number above 0 (zero energy would score infinity and rank first: it is an error)."""
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy {accuracy} is not a fraction between 0 and 1")
    if not (math.isfinite(uwh) and uwh > 0):
        raise ValueError(f"energy per inference {uwh} uWh is not a finite number above 0")
    return accuracy**2 / (uwh / 1000)


def canziani(accuracy: float, params: int) -> float:
    """Top-1 in percent per million parameters."""
    return accuracy * 100 / (params / 1e6)


def netscore(accuracy: float, params: int, macs: int) -> float:
    """Wong's NetScore: ``20 log10(a_pct^2 / sqrt(params_M * macs_M))``."""
    return 20 * math.log10((accuracy * 100) ** 2 / math.sqrt(params / 1e6 * (macs / 1e6)))
