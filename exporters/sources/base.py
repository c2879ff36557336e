"""The shape every source has, and the errors sources raise.

A source is a small class::

    class RaplSource:
        name = "rapl"          # also the ``collector`` tag of its ``agent`` points
        kind = "power"         # "power" sources are sampled at the fine interval, "system" coarser

        def available(self) -> tuple[bool, str]: ...   # (True, what it reads) or (False, why + fix)
        def read(self) -> list[Reading]: ...           # one instant, no hidden state between calls

``read()`` raises :class:`SourceError` (or a subclass) with a message that names the fix; the
agent records the failure in the ``agent`` measurement and goes on with the other sources.
Stateful work (counter wraparound, rates) is the agent's job, not the source's.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from exporters.errors import SourceError, SourceUnavailable
from exporters.schema import Reading

__all__ = ["Source", "SourceError", "SourceUnavailable"]


@runtime_checkable
class Source(Protocol):
    name: str
    kind: str

    def available(self) -> tuple[bool, str]: ...

    def read(self) -> list[Reading]: ...
