"""``keyart insights``' results: computed from logs and a model (``compute_insights``), written as one
self-contained HTML report for people who are not data scientists (headline findings in plain words
first, then figures with labelled axes), CSV tables and one JSON file (``write_insights``)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from keyart import reports
from keyart.catalog import Catalog
from keyart.insights.clickbait import clickbait
from keyart.insights.data import load_logs, load_model
from keyart.insights.effects import attribute_effects
from keyart.insights.findings import Insights, percent
from keyart.insights.model import ModelView
from keyart.insights.segments import member_segments
from keyart.insights.shares import artwork_shares, over_time, segment_estimates, shown_to
from keyart.insights.suggestions import analyse_title, describe
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS

#: ``progress(step, done, total)``: a step's name and how far it is.
Progress = Callable[[str, int, int], None]
STEPS = ("Reading the logs", "Training the model", "Shares and estimates", "Effects", "Titles")


def compute_insights(
    source: str | Path,
    catalog: Catalog,
    model: str | Path | None = None,
    *,
    top_titles: int = 8,
    min_rows: int = 50,
    seed: int = 0,
    window_seconds: float = ATTRIBUTION_WINDOW_SECONDS,
    quality_seconds: float = QUALITY_SECONDS,
    progress: Progress | None = None,
) -> Insights:
    """All the insights of the logs at ``source``: shares and estimates for every title, effects across
    the catalog and for the ``top_titles`` most shown titles, clickbait, and the pool analysis of those
    titles (segments need ``min_rows`` decisions; randomness from ``seed``)."""
    step = progress or (lambda *_: None)
    step(STEPS[0], 0, 1)
    logs = load_logs(source, catalog, window_seconds=window_seconds, quality_seconds=quality_seconds)
    step(STEPS[0], 1, 1)
    policy, where = load_model(
        source,
        catalog,
        model,
        seed=seed,
        window_seconds=window_seconds,
        quality_seconds=quality_seconds,
        progress=lambda done, total: step(STEPS[1], done, total),
    )
    step(STEPS[1], 1, 1)
    view = ModelView(policy, catalog)
    segments = member_segments(logs.contexts, logs.title, catalog)
    titles, counts = np.unique(logs.title, return_counts=True)
    top = [str(t) for t in titles[np.argsort(-counts, kind="stable")][:top_titles]]
    step(STEPS[2], 0, 1)
    shares = artwork_shares(logs)
    who = [r for t in top for r in shown_to(logs, segments, t, min_rows)]
    works = [r for t in top for r in segment_estimates(logs, segments, t, min_rows)]
    moved = [r for t in top for r in over_time(logs, t)]
    found = clickbait(logs)
    step(STEPS[2], 1, 1)
    effects = attribute_effects(view, logs, segments, min_rows=min_rows, seed=seed)
    step(STEPS[3], 1, 1 + len(top))
    for i, t in enumerate(top):
        effects += attribute_effects(view, logs, segments, t, min_rows=min_rows, seed=seed)
        step(STEPS[3], 2 + i, 1 + len(top))
    analyses = []
    for i, t in enumerate(top):
        if t in catalog and catalog.title(t).active:
            analyses.append(
                analyse_title(view, logs, segments, t, min_rows=max(10, min_rows // 2), seed=seed)
            )
        step(STEPS[4], i + 1, len(top))
    return Insights(
        str(source),
        where,
        logs.n,
        logs.dropped,
        int(titles.size),
        (float(logs.timestamp.min()), float(logs.timestamp.max())),
        shares,
        who,
        works,
        moved,
        effects,
        found,
        analyses,
        catalog,
    )


# ---- writing ---------------------------------------------------------------------------------------


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_insights(insights: Insights, out_dir: str | Path) -> dict[str, Path]:
    """Write ``insights.html`` (self-contained), one CSV per table and ``insights.json`` into ``out_dir``;
    returns every path written, by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = insights.tables()
    paths: dict[str, Path] = {}
    for name, rows in tables.items():
        path = out / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            if rows:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows({k: _json_value(v) for k, v in r.items()} for r in rows)
        paths[name] = path
    doc = {
        "source": insights.source,
        "model": insights.model,
        "decisions": insights.decisions,
        "dropped_decisions": insights.dropped,
        "titles": insights.titles,
        "span": list(insights.span),
        "headlines": insights.headlines(),
        "tables": {
            k: [{c: _json_value(v) for c, v in r.items()} for r in rows] for k, rows in tables.items()
        },
    }
    paths["json"] = out / "insights.json"
    paths["json"].write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    from keyart.insights import figures

    figs = figures.draw_all(insights, out)
    paths.update({f"figure {k}": v for k, v in figs.items()})
    paths["html"] = _html(insights, figs, out / "insights.html")
    return paths


def _html(insights: Insights, figs: dict[str, Path], path: Path) -> Path:
    top = [a.title_id for a in insights.analyses]
    shares = [
        {
            "Title": insights._name(s.title_id),
            "Artwork": s.artwork_id,
            "What it shows": describe(insights.catalog.artwork(s.artwork_id)),
            "Share of impressions": percent(s.share),
            "Impressions": s.impressions,
            "Quality plays": s.quality_plays,
            "Take fraction": percent(s.take_fraction),
            "95% interval": f"{percent(s.take_lower)} to {percent(s.take_upper)}",
            "If shown to all (estimate)": percent(s.ips),
            "Estimate's 95% interval": f"{percent(s.ips_lower)} to {percent(s.ips_upper)}",
        }
        for s in insights.shares
        if s.title_id in top
    ]
    catalog_effects = [
        e for e in insights.effects if e.scope == "catalog" and e.clear and e.family != "All members"
    ]
    effects = [
        {
            "Members": f"{e.family}: {e.segment}",
            "Artwork attribute": f"{e.attribute}: {e.value}",
            "Change in take fraction": f"{100 * e.effect:+.1f} points",
            "95% interval": f"{100 * e.lower:+.1f} to {100 * e.upper:+.1f}",
            "Decisions": e.rows,
        }
        for e in sorted(catalog_effects, key=lambda e: -abs(e.effect))[:15]
    ]
    baits = [
        {
            "Title": insights._name(c.title_id),
            "Artwork": c.artwork_id,
            "Plays": c.plays,
            "Quality plays": c.quality_plays,
            "Share of the title's plays": percent(c.play_share),
            "Share of its quality plays": percent(c.quality_share),
            "Quality per play against the pool": f"{c.ratio:.2f}",
            "Its 95% interval": f"{c.ratio_lower:.2f} to {c.ratio_upper:.2f}",
            "Odds of a quality play against the pool": f"{c.odds_ratio:.2f}",
            "Odds' 95% interval": f"{c.odds_ratio_lower:.2f} to {c.odds_ratio_upper:.2f}",
            "Adjusted p-value (lower is surer)": f"{c.q_value:.2g}",
        }
        for c in insights.clickbait
        if c.flagged
    ]
    suggestions = [
        {
            "Title": insights._name(a.title_id),
            "Suggested new artwork": s.description,
            "Predicted take fraction now": percent(s.take_now),
            "With it": percent(s.take_with),
            "Gain": f"{100 * s.gain:+.2f} points",
            "95% interval": f"{100 * s.gain_lower:+.2f} to {100 * s.gain_upper:+.2f}",
        }
        for a in insights.analyses
        if (s := a.suggestion) is not None
    ]
    gaps = [
        {
            "Title": insights._name(g.title_id),
            "Members": f"{g.family}: {g.segment}",
            "Best artwork now": g.best_artwork,
            "Its predicted take": percent(g.best_take),
            "Missing artwork that would serve them": g.design,
            "Predicted gain": f"{100 * g.gain:+.1f} points",
            "95% interval": f"{100 * g.gain_lower:+.1f} to {100 * g.gain_upper:+.1f}",
        }
        for a in insights.analyses
        for g in a.gaps
        if g.poorly_served
    ]
    redundant = [
        {
            "Title": insights._name(u.title_id),
            "Artwork": u.artwork_id,
            "What it shows": describe(insights.catalog.artwork(u.artwork_id)),
            "Best for (share of members)": percent(u.best_for_share),
        }
        for a in insights.analyses
        for u in a.uses
        if u.redundant
    ]
    S = reports.Section
    sections = [
        S("Headline findings", insights.headlines()),
        S(
            "Which artwork each title shows, and how it does",
            [
                "For the most shown titles: each artwork's share of the title's impressions, its take "
                "fraction (quality plays per impression) with a 95% interval, and an estimate of the take "
                "fraction the title would have if this artwork were shown to everyone (inverse propensity "
                "weighting of the logged choices). The second figure shows how the shares moved over the "
                "logged period."
            ],
            [shares],
            [figs[k] for k in ("shares", "over time") if k in figs],
        ),
        S(
            "Who is shown which artwork, and who it works for",
            [
                "Members are grouped by their favourite genre and cast member (what they play more than "
                "others do), device, country, and whether they knew the title before. The first heat map "
                "is who was shown what (share of each group's impressions). The next ones estimate, from "
                "the logs alone, each artwork's take fraction if it were shown to the whole group (inverse "
                "propensity weighting; the interval of each cell is in segment_estimates.csv). The last "
                "is what the model predicts for each group, which also covers groups with little data."
            ],
            images=[figs[k] for k in figs if k.startswith("shown") or k.startswith("takes")],
        ),
        S(
            "What works for whom",
            [
                "How an artwork attribute changes the model's predicted chance of a quality play, in "
                "percentage points, with a 95% interval from the model's uncertainty. Themes and styles "
                "are compared with the average theme or style; featured cast and tags with none. The table "
                "lists the clearest effects for member groups; the figures show everyone's effects and "
                "theme effects by favourite genre."
            ],
            [effects] if effects else [],
            [figs[k] for k in ("effects", "themes by genre") if k in figs],
        ),
        S(
            "Clickbait",
            [
                "An artwork is flagged when its plays turn into quality plays far less often than the rest "
                "of its pool's: its share of the title's plays is well above its share of the title's "
                "quality plays. The test: the odds that one of its plays becomes a quality play are below "
                "half the odds for a play on the rest of the pool, by an exact test, with at most 5% of "
                "the flags expected to be wrong (false-discovery rate). An artwork with few plays may go "
                "unflagged: in simulations, about 150 plays per artwork found 95% of the clickbait."
            ]
            + ([] if baits else ["No artwork is flagged."]),
            [baits] if baits else [],
            [figs["clickbait"]] if "clickbait" in figs else [],
        ),
        S(
            "What to add, and what is redundant",
            [
                "For each title, the combination of attributes its pool lacks that would most raise the "
                "predicted take fraction if each member were shown their best artwork; then the member "
                "groups the current pool serves poorly (a missing artwork would serve them better, with "
                "95% confidence), and artworks that are no group's best."
            ],
            [t for t in (suggestions, gaps, redundant) if t],
        ),
        S(
            "How these numbers were made",
            [
                f"Logs: {insights.source} ({insights.decisions:,} decisions whose reward is known"
                + (
                    f"; {insights.dropped:,} of titles or artworks not in the catalog left out"
                    if insights.dropped
                    else ""
                )
                + f"). Model: {insights.model}. Estimates from few decisions are uncertain: read the "
                "intervals. The model's effects are associations learned from what was shown; they are as "
                "good as the logging policy's exploration. See docs/insights.md for each section's method "
                "and caveats."
            ],
        ),
    ]
    return reports.write_html_report(path, "keyart insights: which artwork works for whom", sections)
