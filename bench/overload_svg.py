"""The overload curve as a hand-written SVG (no plotting library needed): offered rate on x; accepted
rate and refused rate on the left axis; p50 and p99 of accepted requests on the right axis (log)."""

from __future__ import annotations

import math
from typing import Any

WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 640, 40, 330


def _polyline(points: list[tuple[float, float]], colour: str, dashed: bool = False) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points)
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>{dots}'


def _text(x: float, y: float, body: str, anchor: str = "middle", size: int = 12, colour: str = "#333") -> str:
    attributes = f'x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}"'
    return f"<text {attributes}>{body}</text>"


def draw(rows: list[dict[str, Any]], *, capacity: float, connections: int) -> str:
    top_rate = max(max(float(r["offered_per_second"]) for r in rows), 1.0) * 1.05
    top_ms = max(max(float(r["p99_ms"]) for r in rows), 10.0)
    ms_low, ms_high = 1.0, 10 ** math.ceil(math.log10(top_ms * 1.2))

    def x(rate: float) -> float:
        return LEFT + (RIGHT - LEFT) * rate / top_rate

    def y_rate(rate: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * rate / top_rate

    def y_ms(ms: float) -> float:
        share = (math.log10(max(ms, ms_low)) - math.log10(ms_low)) / (
            math.log10(ms_high) - math.log10(ms_low)
        )
        return BOTTOM - (BOTTOM - TOP) * share

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        _text(
            WIDTH / 2,
            22,
            f"POST /v1/jobs, one API process, open loop from {connections} connections",
            size=14,
        ),
        f'<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#333"/>',
        f'<line x1="{RIGHT}" y1="{TOP}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#333"/>',
        f'<line x1="{x(capacity):.1f}" y1="{TOP}" x2="{x(capacity):.1f}" y2="{BOTTOM}" stroke="#999" '
        'stroke-dasharray="2 3"/>',
        _text(x(capacity) + 4, TOP + 12, f"closed-loop capacity {capacity:.0f}/s", anchor="start", size=11),
    ]
    step = 10 ** math.floor(math.log10(top_rate / 2)) * (
        2 if top_rate / 10 ** math.floor(math.log10(top_rate)) < 5 else 5
    )
    tick = 0.0
    while tick <= top_rate:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{BOTTOM}" x2="{x(tick):.1f}" y2="{BOTTOM + 5}" stroke="#333"/>'
        )
        parts.append(_text(x(tick), BOTTOM + 18, f"{tick:.0f}", size=11))
        parts.append(_text(LEFT - 8, y_rate(tick) + 4, f"{tick:.0f}", anchor="end", size=11))
        tick += step
    decade = ms_low
    while decade <= ms_high:
        parts.append(_text(RIGHT + 8, y_ms(decade) + 4, f"{decade:g} ms", anchor="start", size=11))
        parts.append(
            f'<line x1="{LEFT}" y1="{y_ms(decade):.1f}" x2="{RIGHT}" y2="{y_ms(decade):.1f}" stroke="#eee"/>'
        )
        decade *= 10
    parts.append(_text((LEFT + RIGHT) / 2, BOTTOM + 38, "offered requests/s"))
    parts.append(
        _text(18, (TOP + BOTTOM) / 2, "requests/s", size=12).replace(
            "<text", '<text transform="rotate(-90 18 185)"'
        )
    )
    series = [
        (
            [(x(r["offered_per_second"]), y_rate(r["accepted_per_second"])) for r in rows],
            "#1f77b4",
            False,
            "accepted/s",
        ),
        (
            [
                (x(r["offered_per_second"]), y_rate(r["offered_per_second"] * r["refused_share"]))
                for r in rows
            ],
            "#d62728",
            False,
            "refused/s (503)",
        ),
        (
            [(x(r["offered_per_second"]), y_ms(r["p50_ms"])) for r in rows],
            "#2ca02c",
            True,
            "p50 of accepted (right)",
        ),
        (
            [(x(r["offered_per_second"]), y_ms(r["p99_ms"])) for r in rows],
            "#ff7f0e",
            True,
            "p99 of accepted (right)",
        ),
    ]
    for index, (points, colour, dashed, label) in enumerate(series):
        parts.append(_polyline(points, colour, dashed))
        legend_y = TOP + 30 + 16 * index
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(
            f'<line x1="{LEFT + 12}" y1="{legend_y}" x2="{LEFT + 36}" y2="{legend_y}" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
        parts.append(_text(LEFT + 42, legend_y + 4, label, anchor="start", size=11))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.overload_svg RESULT.json OUT.svg``: draw a saved run again."""
    import json
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    record = json.loads(Path(args[0]).read_text())
    capacity = float(record["capacity"]["one_process_per_second"])
    connections = int(record.get("curve_connections", 512))
    Path(args[1]).write_text(draw(record["curve"], capacity=capacity, connections=connections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
