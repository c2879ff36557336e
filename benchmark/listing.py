"""What ``python -m benchmark models`` prints: the registry as a text table or JSON."""

from __future__ import annotations

from typing import Any

from benchmark.registry import MODELS


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def registry_table() -> str:
    """The registry as an aligned text table, for ``python -m benchmark models``."""
    header = ("name", "input", "params (M)", "MACs (G)", "top-1", "top-5", "preprocessing", "year")
    rows = [header]
    for s in MODELS.values():
        rows.append(
            (
                s.name,
                "x".join(str(d) for d in s.input_shape),
                _fmt(None if s.params is None else s.params / 1e6, ".2f"),
                _fmt(None if s.macs is None else s.macs / 1e9, ".3f"),
                _fmt(None if s.top1 is None else s.top1 * 100, ".1f"),
                _fmt(None if s.top5 is None else s.top5 * 100, ".1f"),
                s.preprocess_mode,
                _fmt(s.year, "d"),
            )
        )
    numeric = {2, 3, 4, 5, 7}
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]
    lines.append("")
    lines.append(
        "top-1, top-5: published ImageNet validation accuracy in percent (- where none is\n"
        "published). preprocessing: builtin (the model takes 0..255), tf (-1..1), caffe (BGR\n"
        "minus the ImageNet mean), torch (ImageNet mean and standard deviation)."
    )
    return "\n".join(lines)


def registry_json() -> list[dict[str, Any]]:
    """The registry as JSON-ready dicts, one per model, in the table's order."""
    return [spec.as_dict() for spec in MODELS.values()]
