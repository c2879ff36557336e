"""tubai benchmark: runs models over datasets and marks each run's energy window.

``measure`` and ``Monitor`` measure windows in users' own code (see :mod:`benchmark.measure`).
"""

from __future__ import annotations

from benchmark.measure import Monitor, Window, WindowResult, measure

__all__ = ["Monitor", "Window", "WindowResult", "measure"]
