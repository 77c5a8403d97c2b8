"""Figures with their baselines, rendered as aligned text tables and as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured value, optionally beside the baseline it is compared with.

    ``ratio`` is baseline / value (how many times faster or cheaper ours is);
    ``goal`` states what the figure should satisfy and ``met`` whether it does.
    """

    name: str
    value: float
    unit: str = "s"
    baseline_name: str = ""
    baseline: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.value <= 0:
            return None
        return self.baseline / self.value

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else round(self.ratio, 2)
        return data


@dataclass
class Section:
    """One benchmark's results: its figures, free-form tables and raw details for the JSON."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        self.tables.append((title, header, rows))

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "figures": [f.as_json() for f in self.figures],
            "tables": [{"title": t, "header": h, "rows": r} for t, h, r in self.tables],
            "details": self.details,
        }


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.1f} s" if value >= 1 else f"{value:.2f} s"
    if unit == "USD":
        return f"${value:,.2f}"
    if unit == "calls":
        return f"{value:.0f}"
    return f"{value:g} {unit}".strip()


def text_table(header: list[str], rows: list[list[str]], indent: str = "  ") -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return indent + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]])


def figure_rows(figures: list[Figure]) -> list[list[str]]:
    rows = []
    for f in figures:
        ratio = "-" if f.ratio is None else f"{f.ratio:.1f}x"
        met = "" if f.met is None else ("yes" if f.met else "NO")
        rows.append([f.name, fmt(f.value, f.unit), f.baseline_name or "-", fmt(f.baseline, f.unit), ratio,
                     f.goal, met])
    return rows


FIGURE_HEADER = ["figure", "ours", "baseline", "baseline value", "ratio", "goal", "met"]


def render(sections: list[Section]) -> str:
    out: list[str] = []
    for s in sections:
        out.append("")
        out.append(f"== {s.title} ({s.seconds:.0f} s)")
        if s.error:
            out.append(f"  FAILED: {s.error}")
        if s.figures:
            out.append(text_table(FIGURE_HEADER, figure_rows(s.figures)))
        for title, header, rows in s.tables:
            out.append("")
            out.append(f"  {title}")
            out.append(text_table(header, rows, indent="    "))
    return "\n".join(out)


def write_json(path: Path, sections: list[Section], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "sections": {s.name: s.as_json() for s in sections}}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
