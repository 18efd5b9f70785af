"""The charge-point simulator behind `autimit-csms simulate` (issue 10, item 5).

Owns simulated chargers and nothing of the server: `charger` is what a charge point knows
and decides (sans-I/O, on the project's codec `autimit_csms.ocpp16`), `station` runs one
Trio task per simulated station against a live CSMS, `provision` finds or creates the
stations (a file, or the REST API). The command line is `autimit_csms.simulate`.
"""

from .charger import ChargePoint, ChargerRpc, ChargerSettings
from .provision import StationSpec
from .station import SCENARIOS, Options, Simulation, StationRun, Tally

__all__ = [
    "SCENARIOS",
    "ChargePoint",
    "ChargerRpc",
    "ChargerSettings",
    "Options",
    "Simulation",
    "StationRun",
    "StationSpec",
    "Tally",
]
