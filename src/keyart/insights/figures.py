"""The insights report's figures (PNG, through ``keyart.reports``' matplotlib helpers): labelled axes,
percentages for shares and take fractions, percentage points for effects."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.ticker import FuncFormatter, PercentFormatter

from keyart import reports

if TYPE_CHECKING:
    from keyart.insights.findings import Insights

#: Heat maps show at most this many rows (the largest segments).
MAX_ROWS = 24


def _heatmap(
    matrix: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    title: str,
    colour_label: str,
    path: Path,
    *,
    diverging: bool = False,
    scale: float = 100.0,
    decimals: int = 1,
) -> Path:
    """A labelled heat map with each cell's value written in it (times ``scale``)."""
    plt = reports._plt()
    h, w = matrix.shape
    fig, ax = plt.subplots(figsize=(min(2.2 + 0.75 * w, 9.0), 1.4 + 0.32 * h))
    finite = matrix[np.isfinite(matrix)]
    if diverging:
        lim = float(np.abs(finite).max()) if finite.size else 1.0
        im = ax.imshow(matrix, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    else:
        im = ax.imshow(matrix, cmap="Blues", aspect="auto")
    ax.set_xticks(np.arange(w), list(cols), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(np.arange(h), list(rows), fontsize=8)
    if h * w <= 400:
        top = float(np.abs(finite).max()) if finite.size else 1.0
        for i in range(h):
            for j in range(w):
                v = matrix[i, j]
                if np.isfinite(v):
                    colour = "white" if abs(v) > 0.6 * top and not diverging else "black"
                    ax.text(
                        j, i, f"{scale * v:.{decimals}f}", ha="center", va="center", fontsize=7, color=colour
                    )
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=10)
    ax.set_xlabel("attribute" if diverging else "artwork")
    ax.set_ylabel("members")
    bar = fig.colorbar(im, ax=ax, label=colour_label, shrink=0.8)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{scale * v:.{decimals}f}"))
    return reports._save(fig, path)


def _segment_label(family: str, segment: str) -> str:
    return f"{family}: {segment}"


def draw_all(insights: Insights, out: Path) -> dict[str, Path]:
    """Every figure the report shows, by name."""
    figs: dict[str, Path] = {}
    top = [a.title_id for a in insights.analyses]
    if top:
        figs["shares"] = _shares(insights, top, out / "fig1-impression-shares.png")
        figs["over time"] = _over_time(insights, top[0], out / "fig2-shares-over-time.png")
        shown = _shown(insights, top[0], out / "fig3-who-is-shown-what.png")
        if shown is not None:
            figs["shown"] = shown
    for i, t in enumerate(top[:3]):
        estimated = _estimated(insights, t, out / f"fig4-estimated-take-{i + 1}.png")
        if estimated is not None:
            figs[f"shown estimated {t}"] = estimated
    for i, a in enumerate(insights.analyses[:1]):
        if a.segments:
            order = _largest(insights, a.title_id, a.segments)
            figs[f"takes {a.title_id}"] = _heatmap(
                a.takes[order],
                [_segment_label(*a.segments[k]) for k in order],
                a.artworks,
                f"Predicted take fraction of each artwork of {insights._name(a.title_id)}, by member group",
                "predicted take fraction (%), per artwork",
                out / f"fig5-predicted-take-{i + 1}.png",
            )
    effects = _effects(insights, out / "fig6-attribute-effects.png")
    if effects is not None:
        figs["effects"] = effects
    themes = _themes_by_genre(insights, out / "fig7-themes-by-genre.png")
    if themes is not None:
        figs["themes by genre"] = themes
    bait = _clickbait(insights, out / "fig8-clickbait.png")
    if bait is not None:
        figs["clickbait"] = bait
    return figs


def _largest(insights: Insights, title_id: str, segments: Sequence[tuple[str, str]]) -> list[int]:
    """Indices of at most ``MAX_ROWS`` segments, the largest first within each family's order."""
    sizes = {
        (r["family"], r["segment"]): r["segment_impressions"]
        for r in insights.shown_to
        if r["title_id"] == title_id
    }
    ranked = sorted(range(len(segments)), key=lambda k: -sizes.get(segments[k], 0))[:MAX_ROWS]
    return sorted(ranked)


def _shares(insights: Insights, top: Sequence[str], path: Path) -> Path:
    plt = reports._plt()
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.45 * len(top)))
    cmap = plt.get_cmap("tab20")
    for y, t in enumerate(top[::-1]):
        left = 0.0
        for k, s in enumerate(x for x in insights.shares if x.title_id == t):
            ax.barh(y, s.share, left=left, color=cmap(k % 20), edgecolor="white", linewidth=0.5)
            if s.share > 0.07:
                ax.text(
                    left + s.share / 2,
                    y,
                    s.artwork_id.rsplit("-", 1)[-1],
                    ha="center",
                    va="center",
                    fontsize=7,
                )
            left += s.share
    ax.set_yticks(np.arange(len(top)), [insights._name(t) for t in top[::-1]], fontsize=8)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the title's impressions (each block is one artwork)")
    ax.set_title("Impression shares of each title's artworks")
    return reports._save(fig, path)


def _over_time(insights: Insights, title_id: str, path: Path) -> Path:
    plt = reports._plt()
    rows = [r for r in insights.over_time if r["title_id"] == title_id]
    periods = sorted({r["period"] for r in rows})
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for a in sorted({r["artwork_id"] for r in rows}):
        mine = {r["period"]: r["share"] for r in rows if r["artwork_id"] == a}
        ax.plot(periods, [mine.get(p, np.nan) for p in periods], marker="o", linewidth=1.5, label=a)
    ax.set_xticks(periods, [f"{p}" for p in periods])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("period of the logs (equal lengths, first to last)")
    ax.set_ylabel("share of the title's impressions")
    ax.set_title(f"How {insights._name(title_id)}'s artworks' shares moved")
    ax.legend(fontsize=7, ncol=2)
    return reports._save(fig, path)


def _segment_heatmap(
    rows: Sequence[dict[str, Any]], value: str, size: str, title: str, colour_label: str, path: Path
) -> Path | None:
    """Segment x artwork heat map of one title's rows (``value`` per cell), the ``MAX_ROWS`` largest
    segments (by ``size``) in their order."""
    segs = list(dict.fromkeys((r["family"], r["segment"]) for r in rows))
    if not segs:
        return None
    arts = sorted({r["artwork_id"] for r in rows})
    sizes = {(r["family"], r["segment"]): r[size] for r in rows}
    segs = [segs[k] for k in sorted(sorted(range(len(segs)), key=lambda k: -sizes[segs[k]])[:MAX_ROWS])]
    m = np.full((len(segs), len(arts)), np.nan)
    for r in rows:
        key = (r["family"], r["segment"])
        if key in segs:
            m[segs.index(key), arts.index(r["artwork_id"])] = r[value]
    return _heatmap(m, [_segment_label(*s) for s in segs], arts, title, colour_label, path)


def _shown(insights: Insights, title_id: str, path: Path) -> Path | None:
    """Who was shown which artwork of one title (logged shares)."""
    return _segment_heatmap(
        [r for r in insights.shown_to if r["title_id"] == title_id],
        "share",
        "segment_impressions",
        f"Who is shown which artwork of {insights._name(title_id)} (logged)",
        "share of the group's impressions (%), per artwork",
        path,
    )


def _estimated(insights: Insights, title_id: str, path: Path) -> Path | None:
    """Segment x artwork IPS estimates of one title (from the logs alone)."""
    return _segment_heatmap(
        [r for r in insights.segment_estimates if r["title_id"] == title_id],
        "estimate",
        "decisions",
        f"Estimated take fraction of each artwork of {insights._name(title_id)} if shown to the whole group",
        "estimated take fraction (%), per artwork",
        path,
    )


def _effects(insights: Insights, path: Path) -> Path | None:
    rows = [e for e in insights.effects if e.scope == "catalog" and e.family == "All members"]
    if not rows:
        return None
    plt = reports._plt()
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.28 * len(rows)))
    y = np.arange(len(rows))[::-1]
    val = np.array([e.effect for e in rows]) * 100
    lo = np.array([e.lower for e in rows]) * 100
    hi = np.array([e.upper for e in rows]) * 100
    colours = ["#c44e52" if e.upper < 0 else "#55a868" if e.lower > 0 else "#8c8c8c" for e in rows]
    ax.hlines(y, lo, hi, colors=colours, linewidth=1.5)
    ax.scatter(val, y, c=colours, zorder=3, s=18)
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(y, [f"{e.attribute}: {e.value}" for e in rows], fontsize=8)
    ax.set_xlabel("change in the chance of a quality play (percentage points; bars: 95% interval)")
    ax.set_title("What each artwork attribute does, for all members")
    return reports._save(fig, path)


def _themes_by_genre(insights: Insights, path: Path) -> Path | None:
    rows = [
        e
        for e in insights.effects
        if e.scope == "catalog" and e.family == "Favourite genre" and e.attribute == "Theme"
    ]
    if not rows:
        return None
    segs = list(dict.fromkeys(e.segment for e in rows))[:MAX_ROWS]
    themes = list(dict.fromkeys(e.value for e in rows))
    m = np.full((len(segs), len(themes)), np.nan)
    for e in rows:
        if e.segment in segs:
            m[segs.index(e.segment), themes.index(e.value)] = e.effect
    return _heatmap(
        m,
        [f"favourite genre: {s}" for s in segs],
        [f"{t} theme" for t in themes],
        "Which artwork theme works for whom (against the average theme)",
        "change in take fraction (points)",
        path,
        diverging=True,
    )


def _clickbait(insights: Insights, path: Path) -> Path | None:
    rows = [c for c in insights.clickbait if c.plays >= 10 and np.isfinite(c.quality_share)]
    if not rows:
        return None
    plt = reports._plt()
    fig, ax = plt.subplots(figsize=(6.5, 5.0))
    for flagged, colour, label in (
        (False, "#4c72b0", "not flagged"),
        (True, "#c44e52", "flagged as clickbait"),
    ):
        sub = [c for c in rows if c.flagged == flagged]
        if not sub:
            continue
        x = np.array([c.play_share for c in sub])
        y = np.array([c.quality_share for c in sub])
        xerr = np.array(
            [[c.play_share - c.play_share_lower, c.play_share_upper - c.play_share] for c in sub]
        ).T
        yerr = np.array(
            [[c.quality_share - c.quality_share_lower, c.quality_share_upper - c.quality_share] for c in sub]
        ).T
        ax.errorbar(
            x, y, xerr=xerr, yerr=yerr, fmt="o", color=colour, ecolor=colour, alpha=0.7, ms=4, label=label
        )
    lim = max(max(c.play_share_upper for c in rows), max(c.quality_share_upper for c in rows))
    ax.plot([0, lim], [0, lim], color="grey", linewidth=1, linestyle="--", label="equal shares")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of its title's plays")
    ax.set_ylabel("share of its title's quality plays")
    ax.set_title("Plays against quality plays, per artwork (bars: 95% intervals)")
    ax.legend(fontsize=8)
    return reports._save(fig, path)


__all__ = ["draw_all"]
