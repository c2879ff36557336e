"""The tubai Grafana dashboards as Grafana sees them, for tests: panels, queries, variables.

The dashboards (``grafana/dashboards/*.json``) hold raw InfluxQL with Grafana's macros and
template variables. Before a query reaches InfluxDB, Grafana (InfluxQL mode) replaces
``$timeFilter`` with ``time >= <from>ms and time <= <to>ms``, ``$__interval`` and ``$interval``
with the group-by interval, ``$__interval_ms`` with it in milliseconds, and a template variable
with its value formatted for a regex: each value escaped as ``escapeRegex`` of @grafana/data
does, several values (or "All") joined as ``(a|b)``. :func:`render` does the same, so a test can
send the result to a real InfluxDB.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

GRAFANA_DIR = Path(__file__).resolve().parent.parent / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "tubai.yml"
PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "tubai.yml"
DATASOURCE = {"type": "influxdb", "uid": "tubai-influxdb"}

MACROS = {"timeFilter", "__interval", "__interval_ms", "interval"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"[/.*+?|()\[\]{}\\^$]")


@dataclass(frozen=True)
class Query:
    """One InfluxQL query of a dashboard: a panel target, a template variable or an annotation."""

    dashboard: str
    kind: str  # "variable", "annotation" or "panel"
    name: str  # the variable's or annotation's name, or the panel's title and the target's refId
    query: str
    result_format: str = "time_series"
    alias: str = ""
    fields_used: frozenset[str] = field(default_factory=frozenset)  # must be in the answer

    @property
    def where(self) -> str:
        return f"{self.dashboard} {self.kind} {self.name}"


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict]:
    """File name -> parsed dashboard, for every ``*.json`` in ``directory``."""
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def panels(dashboard: Mapping) -> Iterator[dict]:
    """Every panel that shows data (rows left out, the panels of collapsed rows included)."""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def transformation_fields(panel: Mapping) -> frozenset[str]:
    """Field names that the panel's transformations refer to (they must exist in the data)."""
    names: set[str] = set()
    for t in panel.get("transformations") or []:
        options = t.get("options") or {}
        if t.get("id") == "organize":
            for key in ("excludeByName", "indexByName", "renameByName"):
                names.update(options.get(key) or {})
        elif t.get("id") == "groupingToMatrix":
            names.update(options[k] for k in ("columnField", "rowField", "valueField"))
    return frozenset(names)


def queries(name: str, dashboard: Mapping) -> list[Query]:
    """Every query of a dashboard: variables first (in order), then annotations, then panels."""
    out = []
    for var in dashboard.get("templating", {}).get("list") or []:
        if var.get("type") == "query":
            text = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append(Query(name, "variable", var["name"], text, "table"))
    for anno in dashboard.get("annotations", {}).get("list") or []:
        target = anno.get("target") or anno
        columns = [target.get("textColumn"), *(target.get("tagsColumn") or "").split(",")]
        used = frozenset(c.strip() for c in columns if c and c.strip())
        out.append(Query(name, "annotation", anno["name"], target["query"], "table", "", used))
    for panel in panels(dashboard):
        used = transformation_fields(panel)
        for t in panel.get("targets") or []:
            out.append(
                Query(
                    name,
                    "panel",
                    f"{panel['title']!r} target {t['refId']}",
                    t["query"],
                    t.get("resultFormat", "time_series"),
                    t.get("alias", ""),
                    used,
                )
            )
    return out


def variables_used(text: str) -> set[str]:
    """Names of the variables and macros that ``text`` refers to (``$x``, ``${x}``, ``[[x]]``)."""
    return {a or c or d for a, _, c, d in _VARIABLE.findall(text)}


def escape_regex(value: str) -> str:
    """``escapeRegex`` of @grafana/data: a backslash before each regex special character."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def regex_value(values: Sequence[str]) -> str:
    """A variable's values as Grafana's InfluxQL data source formats them for ``=~ /^$var$/``."""
    if not values:
        raise ValueError("a variable with no value")
    escaped = [escape_regex(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def render(
    query: str,
    variables: Mapping[str, Sequence[str]],
    start_ms: int,
    end_ms: int,
    interval_ms: int = 1000,
) -> str:
    """``query`` with its macros and variables replaced as Grafana does (KeyError: unknown)."""
    interval = f"{interval_ms}ms" if interval_ms % 1000 else f"{interval_ms // 1000}s"

    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        if name == "timeFilter":
            return f"time >= {start_ms}ms and time <= {end_ms}ms"
        if name in ("__interval", "interval"):
            return interval
        if name == "__interval_ms":
            return str(interval_ms)
        if name not in variables:
            raise KeyError(f"unknown variable ${name} in {query!r}")
        if not variables[name]:
            raise KeyError(f"variable ${name} has no value (its query found none) in {query!r}")
        return regex_value(variables[name])

    return _VARIABLE.sub(replace, query)


def alias_tags(alias: str) -> set[str]:
    """Tag keys an alias shows (``$tag_host``, ``[[tag_host]]``)."""
    return {n[len("tag_") :] for n in variables_used(alias) if n.startswith("tag_")}
