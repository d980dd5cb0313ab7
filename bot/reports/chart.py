"""Charts as PNG bytes, drawn with matplotlib's Agg backend (no display; a Figure per drawing,
never pyplot's global state, so threads can draw at once)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import date

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.blocks.message import cut

# Writers' colours, in stacking order: integrations' dedicated users first (blues), then
# QuickBooks itself, entries with no recorded writer, and people.
INTEGRATION_COLOURS = ("#1f5fa8", "#4f8fd6", "#8fbbe8", "#2a9d8f", "#6cc3b8", "#a3d9d1")
OTHER_COLOURS = {"QuickBooks itself": "#9aa0a6", "No recorded writer": "#d0d3d6", "People": "#f4a261"}
FLAGGED_COLOUR = "#c0392b"
WIDTH, HEIGHT, DPI = 10.0, 4.5, 100  # 1000 x 450 px


def _colour(label: str, index: int) -> str:
    return OTHER_COLOURS.get(label) or INTEGRATION_COLOURS[index % len(INTEGRATION_COLOURS)]


def stacked_days(
    title: str,
    days: Sequence[date],
    series: Mapping[str, Sequence[int]],
    flagged: Sequence[int],
) -> bytes:
    """Entries per day stacked by writer (`series`: label -> a count per day, in stacking order),
    with the flagged entries of each day marked in red above the bars."""
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x = list(range(len(days)))
    colours = [_colour(label, i) for i, label in enumerate(series)]
    labels = [cut(label, 60) for label in series]
    if len(days) <= 92:  # a bar a day
        bottom = [0] * len(days)
        for label, colour, counts in zip(labels, colours, series.values(), strict=True):
            axes.bar(x, counts, bottom=bottom, width=0.9, color=colour, label=label, linewidth=0)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    else:  # months of days: one filled area per writer draws in a fraction of the time
        axes.stackplot(x, *series.values(), labels=labels, colors=colours, step="mid", linewidth=0)
        bottom = [sum(day) for day in zip(*series.values(), strict=True)] if series else [0] * len(days)
    marked = [(i, bottom[i]) for i, n in enumerate(flagged) if n]
    if marked:
        axes.scatter(
            [i for i, _ in marked],
            [top for _, top in marked],
            marker="v",
            color=FLAGGED_COLOUR,
            zorder=3,
            s=28 if len(days) <= 92 else 10,
            label=f"flagged ({sum(flagged):,})",
        )
    _days_axis(axes, days)
    axes.set_ylabel("entries")
    axes.set_title(cut(title, 100), loc="left", parse_math=False)
    if series or marked:
        axes.legend(loc="upper left", fontsize="small", frameon=False, ncols=3)
    axes.margins(x=0.01, y=0.15)
    axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def portfolio(
    title: str,
    names: Sequence[str],
    this_week: Sequence[int],
    flagged: Sequence[int],
    last_week: Sequence[int],
) -> bytes:
    """The digest's chart: entries per company this week (flagged ones in red) beside the week
    before, the busiest companies only."""
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    y = list(range(len(names)))
    axes.barh([i + 0.2 for i in y], last_week, height=0.4, color="#d0d3d6", label="week before")
    axes.barh([i - 0.2 for i in y], this_week, height=0.4, color="#1f5fa8", label="this week")
    axes.barh([i - 0.2 for i in y], flagged, height=0.4, color=FLAGGED_COLOUR, label="flagged")
    axes.set_yticks(y, [cut(n, 40) for n in names])
    for tick in axes.get_yticklabels():
        tick.set_parse_math(False)
    axes.invert_yaxis()
    axes.set_xlabel("entries")
    axes.set_title(cut(title, 100), loc="left", parse_math=False)
    axes.legend(loc="lower right", fontsize="small", frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    return _png(figure)


def _days_axis(axes: object, days: Sequence[date]) -> None:
    step = max(1, len(days) // 10)
    ticks = list(range(0, len(days), step))
    axes.set_xticks(ticks, [days[i].strftime("%d %b") for i in ticks], fontsize="small")  # type: ignore[attr-defined]


def _png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
