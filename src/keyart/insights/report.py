"""``keyart insights``' results: computed from logs and a model (``compute_insights``), written as one
self-contained HTML report for people who are not data scientists (headline findings in plain words
first, then figures with labelled axes), CSV tables and one JSON file (``write_insights``)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keyart import reports
from keyart.catalog import Catalog
from keyart.insights.clickbait import Clickbait, clickbait
from keyart.insights.data import load_logs, load_model
from keyart.insights.effects import Effect, attribute_effects
from keyart.insights.model import ModelView
from keyart.insights.segments import FAMILIES, member_segments
from keyart.insights.shares import ArtworkShare, artwork_shares, over_time, segment_estimates, shown_to
from keyart.insights.suggestions import TitleAnalysis, analyse_title, describe
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS

#: ``progress(step, done, total)``: a step's name and how far it is.
Progress = Callable[[str, int, int], None]
STEPS = ("Reading the logs", "Training the model", "Shares and estimates", "Effects", "Titles")


@dataclass(frozen=True)
class Insights:
    """Everything ``keyart insights`` found, ready to write."""

    source: str
    model: str
    decisions: int
    dropped: int
    titles: int
    span: tuple[float, float]
    shares: list[ArtworkShare]
    shown_to: list[dict[str, Any]]
    segment_estimates: list[dict[str, Any]]
    over_time: list[dict[str, Any]]
    effects: list[Effect]
    clickbait: list[Clickbait]
    analyses: list[TitleAnalysis]
    catalog: Catalog

    def headlines(self) -> list[str]:
        """The findings in plain words, most useful first."""
        out = [
            f"These findings come from {self.decisions:,} decisions on {self.titles:,} titles "
            f"({_date(self.span[0])} to {_date(self.span[1])}), read with {self.model}."
        ]
        clear = [e for e in self.effects if e.scope == "catalog" and e.clear and e.family != "All members"]
        for e in sorted(clear, key=lambda e: -abs(e.effect))[:3]:
            out.append(
                f"For members whose {e.family.lower()} is {e.segment}, {_attribute(e)} "
                f"{'raises' if e.effect > 0 else 'lowers'} the chance of a quality play by "
                f"{_points(abs(e.effect))} ({_interval_points(e.lower, e.upper)})."
            )
        for a in self.analyses[:3]:
            best = [
                r
                for r in self.segment_estimates
                if r["title_id"] == a.title_id and r["best"] and r["family"] == FAMILIES[0] and r["lower"] > 0
            ]
            if len({r["artwork_id"] for r in best}) > 1:
                who = "; ".join(
                    f"{r['segment']} fans: {r['artwork_id']} ({_pct(r['estimate'])}, 95% interval "
                    f"{_pct(r['lower'])} to {_pct(r['upper'])})"
                    for r in best[:4]
                )
                out.append(
                    f"{self._name(a.title_id)} works best with different artworks for different fans: {who}."
                )
        flagged = [c for c in self.clickbait if c.flagged]
        if flagged:
            names = ", ".join(f"{c.artwork_id} ({self._name(c.title_id)})" for c in flagged[:5])
            out.append(
                f"{len(flagged)} artwork{'s look' if len(flagged) > 1 else ' looks'} like clickbait: "
                f"plays that rarely become quality plays. First: {names}."
            )
        else:
            out.append("No artwork is flagged as clickbait.")
        for a in sorted(self.analyses, key=lambda a: -(a.suggestion.gain if a.suggestion else 0))[:3]:
            s = a.suggestion
            if s is not None and s.gain_lower > 0:
                out.append(
                    f"{self._name(a.title_id)} would gain most from a new artwork with {s.description}: "
                    f"predicted take fraction {_pct(s.take_now)} to {_pct(s.take_with)} "
                    f"({_interval_points(s.gain_lower, s.gain_upper)} for the gain)."
                )
        redundant = [u for a in self.analyses for u in a.uses if u.redundant]
        if redundant:
            out.append(
                f"{len(redundant)} artwork{'s are' if len(redundant) > 1 else ' is'} no segment's best "
                f"choice (redundant in its pool), e.g. {', '.join(u.artwork_id for u in redundant[:4])}."
            )
        return out

    def _name(self, title_id: str) -> str:
        t = self.catalog.titles.get(title_id)
        return f"{t.name} ({title_id})" if t is not None and t.name else title_id

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Every table, one row per dict (the CSV files and the JSON)."""
        return {
            "artworks": [dataclasses.asdict(s) for s in self.shares],
            "shown_to": self.shown_to,
            "segment_estimates": self.segment_estimates,
            "over_time": self.over_time,
            "effects": [{**dataclasses.asdict(e), "clear": e.clear} for e in self.effects],
            "clickbait": [dataclasses.asdict(c) for c in self.clickbait],
            "segment_takes": [
                {
                    "title_id": a.title_id,
                    "family": f,
                    "segment": s,
                    "artwork_id": art,
                    "predicted_take": a.takes[i, k],
                }
                for a in self.analyses
                for i, (f, s) in enumerate(a.segments)
                for k, art in enumerate(a.artworks)
            ],
            "segment_gaps": [
                {**dataclasses.asdict(g), "poorly_served": g.poorly_served}
                for a in self.analyses
                for g in a.gaps
            ],
            "suggestions": [
                {
                    "title_id": s.title_id,
                    "theme_genres": "|".join(s.artwork.theme_genres),
                    "featured_cast": "|".join(s.artwork.featured_cast),
                    "style": s.artwork.style,
                    **{k: v for k, v in dataclasses.asdict(s).items() if k not in ("title_id", "artwork")},
                }
                for a in self.analyses
                if (s := a.suggestion) is not None
            ],
            "pool_use": [dataclasses.asdict(u) for a in self.analyses for u in a.uses],
        }


def _date(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.1f}%"


def _points(x: float) -> str:
    return f"{100 * x:.1f} points"


def _interval_points(lo: float, hi: float) -> str:
    return f"95% interval {100 * lo:+.1f} to {100 * hi:+.1f} points"


def _attribute(e: Effect) -> str:
    if e.attribute == "Featured cast":
        return f"featuring {e.value}"
    if e.attribute == "Visual feature":
        return f"more of visual feature {e.value}"
    return f"the {e.value} {e.attribute.lower()}"


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
            "Share of impressions": _pct(s.share),
            "Impressions": s.impressions,
            "Quality plays": s.quality_plays,
            "Take fraction": _pct(s.take_fraction),
            "95% interval": f"{_pct(s.take_lower)} to {_pct(s.take_upper)}",
            "If shown to all (estimate)": _pct(s.ips),
            "Estimate's 95% interval": f"{_pct(s.ips_lower)} to {_pct(s.ips_upper)}",
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
            "Share of the title's plays": _pct(c.play_share),
            "Share of its quality plays": _pct(c.quality_share),
            "Quality per play against the pool": f"{c.ratio:.2f}",
            "Its 95% interval": f"{c.ratio_lower:.2f} to {c.ratio_upper:.2f}",
        }
        for c in insights.clickbait
        if c.flagged
    ]
    suggestions = [
        {
            "Title": insights._name(a.title_id),
            "Suggested new artwork": s.description,
            "Predicted take fraction now": _pct(s.take_now),
            "With it": _pct(s.take_with),
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
            "Its predicted take": _pct(g.best_take),
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
            "Best for (share of members)": _pct(u.best_for_share),
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
                "quality plays (quality per play below 0.6 of the pool's, with 95% confidence)."
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
