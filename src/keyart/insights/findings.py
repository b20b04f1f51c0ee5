"""What ``keyart insights`` found (``Insights``): the tables, and the headline findings in plain words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from keyart.catalog import Catalog
from keyart.insights.clickbait import Clickbait
from keyart.insights.effects import Effect
from keyart.insights.segments import FAMILIES
from keyart.insights.shares import ArtworkShare
from keyart.insights.suggestions import TitleAnalysis


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
                if r["title_id"] == a.title_id and r["clear"] and r["family"] == FAMILIES[0]
            ]
            if len({r["artwork_id"] for r in best}) > 1:
                who = "; ".join(
                    f"{r['segment']} fans: {r['artwork_id']} ({percent(r['estimate'])}, 95% interval "
                    f"{percent(r['lower'])} to {percent(r['upper'])}; "
                    f"{_points(r['margin'])} ahead of the next best)"
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
                    f"predicted take fraction {percent(s.take_now)} to {percent(s.take_with)} "
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
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def percent(x: float) -> str:
    """A share as the report prints it (n/a when not finite)."""
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
