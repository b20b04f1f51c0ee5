"""Figures (PNG, matplotlib's Agg backend) and one self-contained HTML report with the images embedded.

Every figure function takes an experiment's result and a path, writes the PNG and returns the path. The
HTML report is a single file (images as base64 data URIs, tables as HTML), readable offline and easy to
attach to an issue.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keyart.errors import ValidationError


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    _plt().close(fig)
    return out


def plot_batch_vs_online(result: Any, path: str | Path) -> Path:
    """Experiment 1: cumulative regret against the oracle of the batch cycle and the online bandit."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, run in result.runs.items():
        reg = run.cumulative_regret()
        ax.plot(np.arange(1, reg.size + 1), reg, label=name, linewidth=2)
    colors = {"collect": "#f2c9c9", "ab_test": "#f7e6b5"}
    starts = [s for s, _ in result.phases] + [next(iter(result.runs.values())).n_requests]
    for (start, phase), stop in zip(result.phases, starts[1:], strict=False):
        if phase in colors:
            ax.axvspan(start, stop, color=colors[phase], alpha=0.6, linewidth=0)
    ax.set_xlabel("requests (pages)")
    ax.set_ylabel("cumulative expected regret (quality plays)")
    ax.set_title("Batch cycle (red: collect, yellow: A/B test) vs online contextual bandit")
    ax.legend()
    return _save(fig, path)


def plot_replay(result: Any, path: str | Path) -> Path:
    """Experiment 2: replay estimate of each policy's take fraction with its interval, and the truth."""
    plt = _plt()
    rows = result.rows
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = np.arange(len(rows))
    est = np.array([r.estimate for r in rows])
    lo = np.array([r.lower for r in rows])
    hi = np.array([r.upper for r in rows])
    ax.bar(x, est, color="#4c72b0", alpha=0.8, label="replay estimate")
    ax.errorbar(
        x,
        est,
        yerr=[est - lo, hi - est],
        fmt="none",
        ecolor="black",
        capsize=5,
        label=f"{100 * (1 - result.alpha):.0f}% interval",
    )
    ax.scatter(x, [r.truth for r in rows], marker="D", color="#dd8452", zorder=3, s=50, label="true value")
    ax.set_xticks(x, [r.policy for r in rows])
    ax.set_ylabel("take fraction (quality plays / impression)")
    ax.set_title("Offline replay on a uniform exploration log")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_showcase(result: Any, path: str | Path) -> Path:
    """Experiment 3: share of each artwork of one title shown to each taste group, policy vs oracle.

    Horizontal bars, one row per artwork labelled with its id, theme and style in one readable line (a
    pool can hold 24 artworks: vertical bars would need tiny, overlapping labels)."""
    plt = _plt()
    from matplotlib.ticker import PercentFormatter

    k = len(result.artwork_ids)
    n_groups = len(result.groups)
    fig, axes = plt.subplots(1, n_groups, figsize=(5.2 * n_groups + 1.5, 1.2 + 0.34 * k), sharey=True)
    axes = np.atleast_1d(axes)
    labels = [
        f"{a} ({t}, {s})" for a, t, s in zip(result.artwork_ids, result.themes, result.styles, strict=True)
    ]
    y = np.arange(k)[::-1]
    for g, ax in enumerate(axes):
        ax.barh(
            y + 0.2, result.policy_share[g], height=0.4, label=f"policy ({result.policy})", color="#4c72b0"
        )
        ax.barh(y - 0.2, result.oracle_share[g], height=0.4, label="world's best", color="#dd8452")
        ax.set_yticks(y, labels, fontsize=9)
        ax.set_title(f"members {result.groups[g]} (n={result.n_members[g]:,})")
        ax.set_xlabel("share of impressions")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes[-1].legend(fontsize="small", loc="lower right")
    fig.suptitle(f"Which artwork of {result.title_id} each taste group sees")
    return _save(fig, path)


def plot_ab(result: Any, path: str | Path) -> Path:
    """Experiment 4: lift of personalized over unpersonalized selection, with intervals, by segment."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    lifts = result.lifts
    y = np.arange(len(lifts))[::-1]
    val = np.array([x.lift for x in lifts]) * 100
    lo = np.array([x.lower for x in lifts]) * 100
    hi = np.array([x.upper for x in lifts]) * 100
    level = f"{100 * (1 - result.alpha):.0f}%"
    ax.errorbar(
        val,
        y,
        xerr=[val - lo, hi - val],
        fmt="o",
        capsize=5,
        color="#4c72b0",
        label=f"measured lift (bars: {level} interval)",
    )
    ax.scatter(
        np.array([x.true_lift for x in lifts]) * 100, y, marker="D", color="#dd8452", label="true lift"
    )
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(y, [x.segment for x in lifts])
    ax.set_xlabel(f"lift in take fraction, {result.treatment} over {result.control} (%)")
    ax.set_title("Online A/B test: personalized vs unpersonalized")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_learning_curves(runs: Mapping[str, Any], path: str | Path, n_points: int = 40) -> Path:
    """Take fraction over time of several closed-loop runs, with the oracle and random levels."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    first = None
    for name, run in runs.items():
        x, v = run.curve(n_points)
        ax.plot(x, v, label=name, linewidth=1.8)
        first = first or run
    if first is not None:
        ax.axhline(first.oracle_take_fraction(), color="black", linestyle="--", linewidth=1, label="oracle")
        ax.axhline(first.random_take_fraction(), color="grey", linestyle=":", linewidth=1, label="random")
    ax.set_xlabel("requests (pages)")
    ax.set_ylabel("expected take fraction")
    ax.set_title("Closed-loop learning curves")
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


# ---- HTML ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading, paragraphs, optional tables and images."""

    title: str
    text: Sequence[str] = ()
    tables: Sequence[Sequence[Mapping[str, Any]]] = ()
    images: Sequence[str | Path] = ()
    notes: Sequence[str] = field(default_factory=tuple)
    links: Sequence[tuple[str, str]] = ()  # (text, relative address), e.g. another report beside this one


def _fmt(v: Any) -> str:
    """A table cell as people read it: yes/no, thousands separators, four decimals for small numbers."""
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{v:,}"
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return "n/a"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4f}"
    return str(v)


def html_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of rows (dicts with the same keys), values formatted and escaped."""
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: str | Path) -> str:
    p = Path(path)
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}"/></figure>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #4c72b0}h2{margin-top:2em;color:#4c72b0}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:right}th{background:#f0f3f8}td:first-child,th:first-child{text-align:left}
img{max-width:100%}figure{margin:1em 0}.note{color:#666;font-size:.9em}
"""


def write_html_report(
    path: str | Path, title: str, sections: Sequence[Section], intro: Sequence[str] = ()
) -> Path:
    """Write one self-contained HTML file (embedded PNGs, inline CSS) and return its path."""
    if not sections:
        raise ValidationError("sections must hold at least one Section.")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    parts += [f"<p>{html.escape(t)}</p>" for t in intro]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        parts += [html_table(t) for t in s.tables]
        parts += [_image(i) for i in s.images]
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in s.notes]
        parts += [f'<p><a href="{html.escape(href)}">{html.escape(text)}</a></p>' for text, href in s.links]
    parts.append("</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def plot_cold_start(result: Any, path: str | Path) -> Path:
    """Cold start from the pixels: share of oracle on the release pools by requests after the release, with
    and without visual features, each with its own steady state (dashed) and a random choice's (dotted)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
    for color, c in zip(colors, result.curves.values(), strict=False):
        ax.plot(c.ends, c.share, marker="o", color=color, linewidth=2, label=c.variant)
        ax.axhline(c.steady, color=color, linestyle="--", linewidth=1, label=f"steady state, {c.variant}")
    first = next(iter(result.curves.values()))
    ax.plot(first.ends, first.random_share, color="grey", linestyle=":", label="random choice")
    ax.set_xlabel("requests (pages) after the release")
    ax.set_ylabel("share of oracle on pools with a new artwork")
    ax.set_title("Brand-new artworks (pixels only): with and without visual features")
    ax.legend(fontsize="small")
    return _save(fig, path)
