"""Efficiency accounting for the spiking head: firing statistics, MACs, SOPs, energy.

Convention of the SNN literature (Horowitz, ISSCC 2014, 45 nm, 32-bit float): a layer fed by
real values costs ``MACs × E_MAC`` (4.6 pJ), a layer fed by spikes costs ``SOPs × E_AC``
(0.9 pJ) with ``SOPs`` = the nonzero inputs × fan-out, i.e. input firing rate × MACs, summed
over all (real, unpadded) time steps. :data:`COUNTED` and :data:`EXCLUDED` say exactly what
is in; every report carries them.

- :func:`measure`: run the model on real features and count what actually happens.
- :func:`estimate`: no data; MACs from the architecture and an assumed firing rate.
"""

from __future__ import annotations

from ptssnn.energy.report import (
    COUNTED,
    E_AC_PJ,
    E_MAC_PJ,
    EXCLUDED,
    EfficiencyReport,
    LayerCost,
    NeuronStats,
    estimate,
    measure,
)

__all__ = [
    "COUNTED",
    "EXCLUDED",
    "E_AC_PJ",
    "E_MAC_PJ",
    "EfficiencyReport",
    "LayerCost",
    "NeuronStats",
    "estimate",
    "measure",
]
