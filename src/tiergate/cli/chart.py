"""``tiergate plan --chart``: the plan as a picture (daily sends, the tier's limit each day, the running total).

SVG is drawn by hand (no dependency, stays sharp, opens in any browser); PNG goes through matplotlib
when it is installed (``pip install 'tiergate[charts]'``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from tiergate.core.planner import Plan

__all__ = ["ChartError", "plan_png", "plan_svg", "write_chart"]

GREEN, BLUE, GREY, INK, MUTED, LINE = "#0b7a5a", "#1f5fbf", "#5f6b76", "#17212b", "#5f6b76", "#dfe4e8"
MAX_BARS = 120  # beyond this many days the sends are drawn as a stepped area


class ChartError(ValueError):
    """A chart that cannot be written: the message says what to do."""


@dataclass(frozen=True, slots=True)
class _Day:
    day: int
    send: int
    limit: int | None
    tier: str
    cumulative: int


def _days(result: Plan) -> list[_Day]:
    return [_Day(d.day, d.send, d.tier.limit, d.tier.name, d.cumulative) for d in result.days]


def _nice(v: float) -> float:
    if v <= 0:
        return 1.0
    p = 10.0 ** math.floor(math.log10(v))
    return next(m * p for m in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0) if m * p >= v)


def _short(n: float | None) -> str:
    if n is None:
        return "∞"
    if n >= 1_000_000 and n % 10_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000 and n % 100 == 0:
        return f"{n / 1_000:g}K"
    return f"{n:,.0f}"


def _y_max(days: list[_Day]) -> float:
    """Sends set the scale; a tier limit far above them (an upgrade on the last day) is drawn clipped."""
    sends = max((d.send for d in days), default=0) or 1
    limits = [d.limit for d in days if d.limit is not None and d.limit <= 2.5 * sends]
    return _nice(max([sends, *limits]) * 1.05)


def _title(result: Plan) -> str:
    return (f"{result.audience:,} recipients, {result.policy} policy, from {result.start_tier.name}: "
            f"{result.total_days:,} day(s), then {result.final_tier.name}")


def plan_svg(result: Plan, width: int = 880, height: int = 380) -> str:
    days = _days(result)
    left, right, top, bottom = 64, 70, 44, 64
    pw, ph = width - left - right, height - top - bottom
    n = max(1, len(days))
    gw = pw / n
    y_max = _y_max(days)
    total = max(1, result.audience)

    def y(v: float) -> float:
        return top + ph - min(v, y_max) / y_max * ph

    def y2(v: float) -> float:
        return top + ph - v / total * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{left}" y="24" font-size="15" font-weight="600" fill="{INK}">{escape(_title(result))}</text>']
    for i in range(5):
        v = y_max * i / 4
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eef1f4"/>')
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end" fill="{MUTED}">{_short(v)}</text>')
        c = total * i / 4
        out.append(f'<text x="{left + pw + 8}" y="{y2(c) + 4:.1f}" fill="{GREY}">{_short(round(c))}</text>')
    if len(days) <= MAX_BARS:
        bw = max(1.0, min(36.0, gw * 0.7))
        for i, d in enumerate(days):
            x = left + i * gw + (gw - bw) / 2
            out.append(f'<rect class="send" x="{x:.1f}" y="{y(d.send):.1f}" width="{bw:.1f}" '
                       f'height="{top + ph - y(d.send):.1f}" fill="{GREEN}" rx="2">'
                       f'<title>day {d.day}: {d.send:,} at {d.tier}</title></rect>')
    else:
        path = [f"M {left} {top + ph}"]
        for i, d in enumerate(days):
            if i == 0 or d.send != days[i - 1].send:
                path.append(f"V {y(d.send):.1f}")
            if i == len(days) - 1 or d.send != days[i + 1].send:
                path.append(f"H {left + (i + 1) * gw:.1f}")
        path.append(f"V {top + ph} Z")
        out.append(f'<path class="sends" d="{" ".join(path)}" fill="{GREEN}" fill-opacity="0.85"/>')
    # The tier's limit each day: a step line, labelled where it changes.
    step: list[str] = []
    for i, d in enumerate(days):
        if i and d.tier == days[i - 1].tier:
            continue
        yy = y(d.limit) if d.limit is not None else top
        x0 = left + i * gw
        step.append(f"{'L' if step else 'M'} {x0:.1f} {yy:.1f}")
        clipped = d.limit is None or d.limit > y_max
        out.append(f'<text class="tier" x="{x0 + 3:.1f}" y="{yy - 5:.1f}" fill="{BLUE}" font-weight="600">'
                   f'{escape(d.tier)}{" ↑" if clipped else ""}</text>')
        end = next((j for j in range(i + 1, len(days)) if days[j].tier != d.tier), len(days))
        step.append(f"H {left + end * gw:.1f}")
    if step:
        out.append(f'<path d="{" ".join(step)}" fill="none" stroke="{BLUE}" stroke-width="2"/>')
    # The running total against the audience (right axis).
    if days:
        pts = " ".join(f"{left + (i + 1) * gw:.1f},{y2(d.cumulative):.1f}" for i, d in enumerate(days)
                       if len(days) <= 2000 or i % max(1, len(days) // 2000) == 0 or i == len(days) - 1)
        out.append(f'<polyline points="{left},{y2(0):.1f} {pts}" fill="none" stroke="{GREY}" '
                   f'stroke-width="1.5" stroke-dasharray="5 4"/>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="{LINE}"/>')
    every = max(1, math.ceil(n / max(1, pw // 46)))
    for i, d in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            out.append(f'<text x="{left + (i + 0.5) * gw:.1f}" y="{top + ph + 16}" text-anchor="middle" '
                       f'fill="{MUTED}">{d.day}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 32}" text-anchor="middle" fill="{MUTED}">day</text>')
    legend = [(GREEN, "rect", "sends per day (left axis)"), (BLUE, "line", "tier limit in force"),
              (GREY, "dash", "running total (right axis)")]
    x = left
    for color, kind, label in legend:
        yy = height - 14
        if kind == "rect":
            out.append(f'<rect x="{x}" y="{yy - 9}" width="12" height="12" rx="2" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="5 4"' if kind == "dash" else ""
            out.append(f'<line x1="{x}" x2="{x + 14}" y1="{yy - 3}" y2="{yy - 3}" stroke="{color}" '
                       f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{x + 20}" y="{yy + 1}" fill="{INK}">{label}</text>')
        x += 28 + 7 * len(label)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def plan_png(result: Plan, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise ChartError("a PNG chart needs matplotlib: pip install 'tiergate[charts]' (or write an .svg)") from None
    days = _days(result)
    xs = [d.day for d in days]
    fig, ax = plt.subplots(figsize=(10, 4.4), dpi=120)
    if len(days) <= MAX_BARS:
        ax.bar(xs, [d.send for d in days], color=GREEN, label="sends per day")
    else:
        ax.fill_between(xs, [d.send for d in days], step="mid", color=GREEN, alpha=0.85, label="sends per day")
    y_max = _y_max(days)
    ax.step(xs, [min(d.limit, y_max) if d.limit is not None else y_max for d in days], where="mid", color=BLUE,
            linewidth=2, label="tier limit in force")
    for i, d in enumerate(days):
        if i == 0 or d.tier != days[i - 1].tier:
            ax.annotate(d.tier, (d.day - 0.45, min(d.limit or y_max, y_max)), xytext=(0, 4),
                        textcoords="offset points", color=BLUE, fontsize=8, fontweight="bold")
    ax.set_ylim(0, y_max * 1.08)
    thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")
    ax.yaxis.set_major_formatter(thousands)
    ax.set_xlabel("day")
    ax.set_ylabel("recipients per day")
    ax2 = ax.twinx()
    ax2.plot(xs, [d.cumulative for d in days], linestyle="--", color=GREY, label="running total")
    ax2.set_ylim(0, max(1, result.audience) * 1.08)
    ax2.set_ylabel("running total")
    ax2.yaxis.set_major_formatter(thousands)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
    ax.set_title(_title(result), fontsize=10, loc="left")
    for spine in ("top",):
        ax.spines[spine].set_visible(False)
        ax2.spines[spine].set_visible(False)
    fig.tight_layout()
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


def write_chart(result: Plan, path: Path) -> None:
    """Write ``path`` as SVG or PNG by its suffix; ChartError with what to do otherwise."""
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise ChartError(f"--chart {path}: use a file name ending in .svg or .png")
    if not path.parent.exists():
        raise ChartError(f"--chart {path}: the folder {path.parent} does not exist")
    try:
        if suffix == ".svg":
            path.write_text(plan_svg(result), encoding="utf-8")
        else:
            plan_png(result, path)
    except OSError as exc:
        raise ChartError(f"--chart {path}: cannot write it ({exc.strerror or exc})") from None
