"""Write the example warehouse export of docs/your-data.md (seeded; run from the repository root:
``python docs/examples/warehouse/make_export.py``).

A streaming service's own tables, with its own column names: ``assets`` (one row per artwork, its show's
columns alongside), ``impressions`` (which artwork its production policy showed, from which candidates,
with which probabilities) and ``plays`` (impression, play and stop events), as CSV and as Parquet, for
two periods: weeks 1-2 (``*.csv``, to train on) and week 3 (``*-week3.csv``, held out to evaluate on).
A few rows are dirty, as in a real export (a missing timestamp, an unknown event name). The hidden truth:
faces and the viewer's country's favourite genre make plays likelier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parent
GENRES = ["Drama", "Comedy", "Action", "Romance", "Thriller", "Kids"]
STYLES = ["face", "landscape", "typography", "dark"]
FAVOURITE = {"US": "Action", "BR": "Romance", "DE": "Thriller", "JP": "Kids"}
ADJ = ["Silent", "Golden", "Last", "Broken", "Wild", "Hidden", "Northern", "Electric", "Paper", "Iron"]
NOUN = ["Harbor", "Orchard", "Signal", "Kingdom", "Summer", "Detective", "River", "Garden", "Engine", "Crown"]
CAST = [f"actor_{i:02d}" for i in range(40)]
START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
PROBS = [0.5, 0.25, 0.25]  # the production policy: the first artwork half the time


def _shows(rng: np.random.Generator) -> list[dict]:
    rows = []
    for s in range(40):
        show = f"SH{s + 1:04d}"
        genres = rng.choice(GENRES, size=2, replace=False).tolist()
        cast = rng.choice(CAST, size=3, replace=False).tolist()
        title = f"{ADJ[s % 10]} {NOUN[(s * 3 + s // 10) % 10]}"
        runtime = int(rng.integers(25, 140))
        for j in range(3):
            rows.append(
                {
                    "show_id": show,
                    "show_title": title,
                    "genre_list": "|".join(genres),
                    "cast_list": "|".join(cast),
                    "runtime_min": runtime,
                    "asset_id": f"{show}-K{j + 1}",
                    "asset_themes": genres[j % 2],
                    "asset_people": cast[j] if j != 1 else "",
                    "asset_style": STYLES[int(rng.integers(len(STYLES)))] if j else "typography",
                    "asset_url": f"https://cdn.example.com/keyart/{show}-K{j + 1}.jpg",
                    "designer": ["in-house", "studio-a", "studio-b"][int(rng.integers(3))],
                }
            )
    return rows


def _logs(rng: np.random.Generator, assets: list[dict], n: int, day0: int, days: int, tag: str) -> tuple:
    by_show: dict[str, list[dict]] = {}
    for a in assets:
        by_show.setdefault(a["show_id"], []).append(a)
    shows = sorted(by_show)
    accounts = [
        (f"AC{i:05d}", ["US", "BR", "DE", "JP"][i % 4], ["tv", "mobile", "web"][i % 3]) for i in range(800)
    ]
    seconds = np.sort(rng.uniform(day0 * 86_400, (day0 + days) * 86_400, size=n))
    imps, events = [], []
    for i, sec in enumerate(seconds):
        account, country, device = accounts[int(rng.integers(len(accounts)))]
        show = shows[int(rng.integers(len(shows)))]
        pool = by_show[show]
        k = int(rng.choice(3, p=PROBS))
        shown = pool[k]
        at = START + dt.timedelta(seconds=float(sec))
        imp = f"IMP{tag}{i + 1:06d}"
        imps.append(
            {
                "impression_id": imp,
                "shown_at": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "account_id": account,
                "country": country,
                "device": device,
                "show_id": show,
                "asset_id": shown["asset_id"],
                "candidate_assets": "|".join(a["asset_id"] for a in pool),
                "candidate_probs": "|".join(str(p) for p in PROBS),
            }
        )
        p_play = (
            0.08
            + 0.30 * (shown["asset_style"] == "face")
            + 0.22 * (shown["asset_themes"] == FAVOURITE[country])
        )
        when = _clock(at)
        events.append(_event(f"EV{tag}{len(events) + 1:07d}", imp, account, show, "impression", "", when(1)))
        if rng.random() < p_play:
            watched = float(rng.integers(600, 5400)) if rng.random() < 0.8 else float(rng.integers(20, 300))
            events.append(
                _event(f"EV{tag}{len(events) + 1:07d}", imp, account, show, "play", watched, when(40))
            )
            events.append(
                _event(
                    f"EV{tag}{len(events) + 1:07d}", imp, account, show, "stop", watched, when(40 + watched)
                )
            )
    imps[7]["shown_at"] = ""  # dirt: a lost timestamp
    events[11]["event_name"] = "trailer_click"  # dirt: an event keyart does not know
    return imps, events


def _clock(at: dt.datetime) -> Callable[[float], str]:
    """ISO text of ``at`` plus some seconds."""
    return lambda s: (at + dt.timedelta(seconds=s)).isoformat(timespec="seconds").replace("+00:00", "Z")


def _event(key: str, imp: str, account: str, show: str, name: str, secs: object, at: str) -> dict:
    return {
        "event_key": key,
        "impression_key": imp,
        "account_id": account,
        "show_id": show,
        "event_name": name,
        "watch_seconds": secs,
        "event_at": at,
    }


def _write(name: str, rows: list[dict]) -> None:
    text = pa.Table.from_pylist([{k: "" if v is None else str(v) for k, v in r.items()} for r in rows])
    pacsv.write_csv(text, OUT / f"{name}.csv")
    typed = []
    for r in rows:
        t = dict(r)
        for key in ("shown_at", "event_at"):
            if key in t:
                t[key] = dt.datetime.fromisoformat(t[key].replace("Z", "+00:00")) if t[key] else None
        for key in ("genre_list", "cast_list", "candidate_assets"):
            if key in t:
                t[key] = [x for x in t[key].split("|") if x]
        if "candidate_probs" in t:
            t["candidate_probs"] = [float(x) for x in t["candidate_probs"].split("|")]
        if "watch_seconds" in t:
            t["watch_seconds"] = None if t["watch_seconds"] == "" else float(t["watch_seconds"])
        typed.append(t)
    pq.write_table(pa.Table.from_pylist(typed), OUT / f"{name}.parquet")


def main() -> None:
    rng = np.random.default_rng(2024)
    assets = _shows(rng)
    _write("assets", assets)
    imps, events = _logs(rng, assets, 2_400, 0, 14, "A")
    _write("impressions", imps)
    _write("plays", events)
    imps, events = _logs(rng, assets, 1_200, 14, 7, "B")
    _write("impressions-week3", imps)
    _write("plays-week3", events)


if __name__ == "__main__":
    main()
