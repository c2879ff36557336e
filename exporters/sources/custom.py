"""Sources that users add without touching tubai: ``sources.custom`` in the configuration.

Each entry names a class as ``"package.module:Class"`` (a module path, importable from
``sys.path``: installed, or on ``PYTHONPATH``; file paths are not accepted), is instantiated with
its ``options`` as keyword arguments, and must have the shape of :mod:`.base`: ``name`` (str),
``kind`` ("power" or "system"), ``available()`` and ``read()``. An entry's ``interval_s``
overrides the interval of its kind. Every problem is a :class:`ConfigError` naming
``sources.custom[N].class``, what is wrong and the fix.

The loaded object is wrapped in :class:`CustomSource`, so that a user's ``available()`` that
raises, or returns something other than ``(bool, str)``, is reported instead of stopping the
agent. Everything else (other attributes) goes straight to the user's object; ``read()`` too,
except that an ``energy`` reading's ``joules_total`` counter without a ceiling
(``Counter.max_rate``, :mod:`.ceilings`) gets the entry's ``max_watts``, else
:data:`CUSTOM_MAX_WATTS`. A ceiling the source sets itself is kept.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from exporters.config_checks import SECONDS, positive_seconds, require, unknown_key
from exporters.errors import ConfigError
from exporters.schema import ENERGY, Reading
from exporters.sources.base import Source
from exporters.sources.ceilings import WATTS, check_max_watts, max_rate

KINDS = ("power", "system")
KEYS = ("class", "interval_s", "max_watts", "options")  # of one entry
# The ceiling of a custom energy counter that sets none and whose entry gives no max_watts: a
# custom meter may measure anything up to a rack's feed (tens of kW), and a ceiling too low
# would lose real energy, so it errs high; it still rejects a counter read as garbage.
CUSTOM_MAX_WATTS = 100_000.0
_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class CustomSource:
    """A user's source, as loaded from ``sources.custom[index]`` (the object is ``inner``)."""

    def __init__(
        self,
        inner: Any,
        spec: str,
        index: int,
        interval_s: float | None,
        max_watts: float | None = None,
    ) -> None:
        self.inner, self.spec, self.index = inner, spec, index
        self.name: str = inner.name
        self.kind: str = inner.kind
        self.interval_s = interval_s or getattr(inner, "interval_s", None)
        self.max_watts = max_watts or CUSTOM_MAX_WATTS

    def available(self) -> tuple[bool, str]:
        try:
            answer = self.inner.available()
        except Exception as e:  # a user's bug must not stop the agent
            return False, f"{self.spec}.available() raised {type(e).__name__}: {e}"
        if not (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], bool)):
            return False, f"{self.spec}.available() returned {answer!r}, not (bool, str)"
        return answer[0], str(answer[1])

    def read(self) -> list[Reading]:
        """The user's readings, energy counters without a ceiling given ``max_watts``."""
        return [self._with_ceiling(r) for r in self.inner.read()]

    def _with_ceiling(self, reading: Reading) -> Reading:
        counter = reading.counters.get("joules_total")
        if reading.measurement != ENERGY or counter is None or counter.max_rate is not None:
            return reading
        if not counter.scale > 0:  # not joules of any unit: no ceiling to put in its units
            return reading
        ceiling = max_rate(self.max_watts, counter.scale)
        counters = {**reading.counters, "joules_total": replace(counter, max_rate=ceiling)}
        return replace(reading, counters=counters)

    def __getattr__(self, attribute: str) -> Any:  # domains(), close(), ... of the user's object
        if attribute == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)


def custom_entries(entries: Any) -> list[dict[str, Any]]:
    """``sources.custom`` checked, each entry with every key (``interval_s``, ``max_watts``,
    ``options``).

    An entry is ``{class: "package.module:Class", interval_s: 1.0, max_watts: 3000,
    options: {...}}``; only ``class`` is required. Importing the class waits for
    :func:`load_custom`.
    """
    if entries is None:
        return []
    fix = "give a list of {class: 'package.module:Class', options: {...}} entries"
    require(isinstance(entries, list), "sources.custom", entries, fix)
    return [_entry(entry, f"sources.custom[{i}]") for i, entry in enumerate(entries)]


def _entry(entry: Any, where: str) -> dict[str, Any]:
    fix = "give a mapping with at least class: 'package.module:Class'"
    require(isinstance(entry, Mapping) and "class" in entry, where, entry, fix)
    for key in entry:
        if key not in KEYS:
            raise unknown_key(f"{where}.{key}", key, KEYS)
    interval = entry.get("interval_s")
    if interval is not None:
        fix = f"{SECONDS}, or leave it out for the interval of the source's kind"
        positive_seconds(f"{where}.interval_s", interval, fix)
    max_watts = entry.get("max_watts")
    if max_watts is not None:
        fix = f"{WATTS}, or leave it out for {CUSTOM_MAX_WATTS:g} W"
        check_max_watts(f"{where}.max_watts", max_watts, fix)
    options = entry.get("options")
    fix = "give a mapping of keyword arguments for the class"
    require(options is None or isinstance(options, Mapping), f"{where}.options", options, fix)
    return {
        "class": entry["class"],
        "interval_s": interval,
        "max_watts": max_watts,
        "options": dict(options or {}),
    }


def load_custom(spec: dict[str, Any], index: int = 0) -> Source:
    """Import, instantiate and check the source that ``sources.custom[index]`` describes."""
    key = f"sources.custom[{index}].class"
    path = spec.get("class")
    if not isinstance(path, str) or not _PATH.fullmatch(path.strip()):
        raise ConfigError(
            f"config key {key!r} is {path!r}: give 'package.module:Class' (a module path on "
            "PYTHONPATH, a colon, the class name; not a file path)"
        )
    module_name, _, class_name = path.strip().partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or module_name
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise ConfigError(
                f"config key {key!r}: no module named {missing!r}: is it on PYTHONPATH? Install "
                "it, or add the directory that holds it to PYTHONPATH"
            ) from e
        raise ConfigError(
            f"config key {key!r}: {module_name!r} needs module {missing!r}, which is not "
            "installed: install it in the exporter's environment"
        ) from e
    except Exception as e:
        raise ConfigError(
            f"config key {key!r}: importing {module_name!r} failed with {type(e).__name__}: "
            f"{e}: fix the module"
        ) from e
    cls: Any = module
    for part in class_name.split("."):
        cls = getattr(cls, part, None)
    if not callable(cls):
        raise ConfigError(
            f"config key {key!r}: module {module_name!r} ({module.__file__}) has no class "
            f"{class_name!r}: check the name after the colon"
        )
    options = spec.get("options") or {}
    try:
        source = cls(**options)
    except Exception as e:
        raise ConfigError(
            f"config key {key!r}: {path}(**options) failed with {type(e).__name__}: {e}: fix "
            f"sources.custom[{index}].options (given: {', '.join(options) or 'none'})"
        ) from e
    problems = _shape_problems(source)
    if problems:
        raise ConfigError(
            f"config key {key!r}: {path} is not a source: {'; '.join(problems)} (see "
            "exporters/sources/base.py and examples/pdu_meter.py)"
        )
    return CustomSource(source, path, index, spec.get("interval_s"), spec.get("max_watts"))


def _shape_problems(source: Any) -> list[str]:
    """What is missing or wrong in ``source`` compared with the shape of a source."""
    problems = []
    name = getattr(source, "name", None)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"attribute 'name' is {name!r}, not a non-empty str")
    kind = getattr(source, "kind", None)
    if kind not in KINDS:
        problems.append(f"attribute 'kind' is {kind!r}, not 'power' or 'system'")
    for method in ("available", "read"):
        if not callable(getattr(source, method, None)):
            problems.append(f"method '{method}()' is missing")
    return problems
