"""What the insights' truth checks ask of a world: its logs as a service would store them, its true take
of a hypothetical artwork, and artworks added to a pool.

Nothing here changes how a world is drawn or what it answers for its own artworks: ``add_artwork``
appends a new artwork (hidden attributes and catalog entry) after everything else, so the existing
artworks keep their indices and truth, and every function takes its randomness from a given seed or
``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from keyart.catalog import Artwork
from keyart.context import SECONDS_PER_DAY
from keyart.errors import UnknownIdError, ValidationError
from keyart.events import OutcomeRecord, decisions_from_batch
from keyart.features import Featurizer
from keyart.policies import make_policy
from keyart.simulation.config import STYLES, WorldConfig
from keyart.simulation.records import Events
from keyart.simulation.world import World
from keyart.store import EventStore


def insights_config(seed: int = 0) -> WorldConfig:
    """The world of the insights' truth checks and benchmark: small (30 titles of 3-8 artworks, 3,000
    members), plays common enough that a few thousand pages give every artwork plays (play intercept -1.8),
    15% clickbait, and sharper genre tastes that matter more (genre concentration 0.15, theme weight 4)."""
    return WorldConfig(
        seed=seed,
        n_titles=30,
        n_cast=30,
        n_members=3_000,
        mean_history=25.0,
        page_size=5,
        max_pool=8,
        mean_extra_pool=2.0,
        play_intercept=-1.8,
        clickbait_fraction=0.15,
        theme_weight=4.0,
        genre_concentration=0.15,
    )


#: Engaged seconds written for a simulated play: above the default quality bar (600 s) for a quality
#: play, below it otherwise.
QUALITY_PLAY_SECONDS = 1_800.0
SHORT_PLAY_SECONDS = 120.0


def write_world_logs(
    world: World,
    path: str | Path,
    n_requests: int,
    seed: int,
    *,
    policy: str = "uniform",
    chunk: int = 500,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n_requests`` pages of ``world`` into a new event store at ``path`` (``events.duckdb``), as
    the service logs them: each decision with its context and whole probability vector, chosen by an
    untrained ``policy`` (uniform exploration by default), and each play as an outcome a minute later
    (engaged long enough for a quality play or not, as the world drew it). A last outcome a day after the
    final page closes every attribution window. ``progress(k)`` is called after each ``k`` pages."""
    if not isinstance(n_requests, int) or n_requests < 1:
        raise ValidationError(f"n_requests must be a positive int. Got {n_requests!r}.")
    out = Path(path)
    if out.exists():
        raise ValidationError(f"{out} exists already: write_world_logs makes a new event store.")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A5]))
    logger = make_policy(policy, seed=seed)
    featurizer = Featurizer(world.catalog)
    start, last = world.now, world.now
    with EventStore(out) as store:
        for lo in range(0, n_requests, chunk):
            n = min(chunk, n_requests - lo)
            requests = world.sample_requests(
                n, rng, start=start + lo * SECONDS_PER_DAY / world.config.requests_per_day
            )
            contexts = world.contexts(requests)
            titles = [[world.title_ids[int(t)] for t in row] for row in requests.titles]
            rids = [f"s{seed}-r{lo + i}" for i in range(n)]
            decisions = logger.choose(featurizer.pages(contexts, titles, rids))
            per_row = [c for c, row in zip(contexts, titles, strict=True) for _ in row]
            table = decisions_from_batch(decisions, per_row, page="home")
            batch = decisions.batch
            events = world.events_from_ids(per_row, batch.title_ids.tolist(), batch.artwork_ids)
            drawn = world.draw(events, np.asarray(decisions.index), rng)
            store.append_decisions(table)
            store.append_outcomes(_play_records(table, drawn.play, drawn.quality))
            last = float(table.column("timestamp").to_numpy().max())
            if progress is not None:
                progress(n)
        store.append_outcomes(
            [
                OutcomeRecord(
                    f"s{seed}-close", world.member_ids[0], world.title_ids[0], "stop", last + SECONDS_PER_DAY
                )
            ]
        )
    return out


def _play_records(table: pa.Table, play: np.ndarray, quality: np.ndarray) -> list[OutcomeRecord]:
    """One ``play`` outcome per decision that the world answered with a play, a minute after it."""
    rows = np.flatnonzero(play)
    ids = table.column("event_id").to_pylist()
    members = table.column("member_id").to_pylist()
    titles = table.column("title_id").to_pylist()
    ts = table.column("timestamp").to_numpy()
    return [
        OutcomeRecord(
            f"o-{ids[i]}",
            members[i],
            titles[i],
            "play",
            float(ts[i]) + 60.0,
            ids[i],
            QUALITY_PLAY_SECONDS if quality[i] else SHORT_PLAY_SECONDS,
        )
        for i in rows.tolist()
    ]


def draw_like_existing(world: World, title_id: str, rng: np.random.Generator) -> Artwork:
    """An artwork design (its id a placeholder) drawn the way the world drew the title's pool (theme from
    the title's genres, a pair of them 15% of the time, 0-2 of its cast featured, a uniform style, tags as
    the world draws them): the baseline a suggestion is compared with."""
    t = _title(world, title_id)
    genres, cast = world.title_genre_lists[t], world.title_cast_lists[t]
    if len(genres) > 1 and rng.random() < 0.15:
        theme = rng.choice(genres, size=2, replace=False)
    else:
        theme = np.array([rng.choice(genres)])
    n_feat = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))
    featured = rng.choice(cast, size=min(n_feat, len(cast)), replace=False) if len(cast) else []
    tags: tuple[str, ...] = ()
    if world.tags:
        k = min(int(rng.poisson(world.config.tags_per_artwork)), len(world.tags))
        tags = tuple(world.tags[i] for i in sorted(rng.choice(len(world.tags), size=k, replace=False)))
    return Artwork(
        "drawn",
        title_id,
        tuple(world.genres[int(g)] for g in theme),
        tuple(world.cast_names[int(c)] for c in featured),
        STYLES[int(rng.integers(len(STYLES)))],
        tags,
    )


def add_artwork(
    world: World, title_id: str, design: Artwork, *, base: float = 0.0, clickbait: bool = False
) -> str:
    """Add an artwork with ``design``'s attributes (theme, featured cast, style, tags; not its id) to
    ``title_id``'s pool, in the hidden truth and in the catalog, with
    its own hidden appeal ``base``; returns its id. Existing artworks keep their indices and truth."""
    t = _title(world, title_id)
    g = [_index(world.genres, x, "theme genre") for x in design.theme_genres]
    c = [_index(world.cast_names, x, "cast member") for x in design.featured_cast]
    if not g:
        raise ValidationError(
            "design.theme_genres must name at least one genre (the world's artworks all have one)."
        )
    if len(c) > 2:
        raise ValidationError(f"design.featured_cast holds at most 2 names. Got {len(c)}.")
    s = _index(STYLES, design.style, "style")
    tags = [_index(world.tags, x, "tag") for x in design.tags]
    ag = np.zeros((1, world.AG.shape[1]))
    ag[0, g] = 1.0 / len(g)
    ac = np.full((1, 2), -1, dtype=np.int64)
    ac[0, : len(c)] = c
    at = np.zeros((1, world.art_tags.shape[1]), dtype=bool)
    at[0, tags] = True
    n_same = int((world.art_title == t).sum())
    artwork_id = f"{title_id}-a{n_same:02d}"
    while artwork_id in world.artwork_index:
        n_same += 1
        artwork_id = f"{title_id}-a{n_same:02d}"
    world.AG = np.vstack([world.AG, ag])
    world.AC = np.vstack([world.AC, ac])
    world.art_tags = np.vstack([world.art_tags, at])
    world.art_cast_count = (world.AC >= 0).sum(1)
    world.art_title = np.append(world.art_title, t)
    world.art_style = np.append(world.art_style, s)
    world.art_base = np.append(world.art_base, float(base))
    world.art_clickbait = np.append(world.art_clickbait, bool(clickbait))
    world.art_arrival = np.append(world.art_arrival, world.now)
    world._in_catalog_arts = np.append(world._in_catalog_arts, True)
    world.artwork_ids = (*world.artwork_ids, artwork_id)
    world.artwork_index[artwork_id] = len(world.artwork_ids) - 1
    art = Artwork(artwork_id, title_id, design.theme_genres, design.featured_cast, design.style, design.tags)
    world._artworks.append(art)
    world.catalog.add_artworks([art])
    return artwork_id


def design_preferences(
    world: World, title_ids: Sequence[str], genres: Sequence[str], style: str
) -> dict[str, dict[str, str]]:
    """Give each title a designed segment preference: its pool becomes one artwork themed on each of
    ``genres`` (the title's other artworks retired), all of ``style``, no cast featured, no own appeal
    (base 0), honest; members who like genre g most should take the g-themed one. Returns
    {title: {genre: artwork id}}."""
    out = {}
    for t in title_ids:
        old = [a.artwork_id for a in world.catalog.pool(t)]
        out[t] = {
            g: add_artwork(world, t, Artwork("design", t, theme_genres=(g,), style=style)) for g in genres
        }
        for a in old:
            world.catalog.retire_artwork(a)
    return out


def true_takes(
    world: World, title_id: str, members: Sequence[int] | np.ndarray, artwork_ids: Sequence[str] | None = None
) -> np.ndarray:
    """(n, K) the world's true P(quality play) of each member (by index, on their primary device, now)
    for each artwork of ``title_id`` (its current pool when ``artwork_ids`` is None)."""
    t = _title(world, title_id)
    m = np.asarray(members, dtype=np.int64)
    if artwork_ids is None:
        arts = world.pool_indices(t)
    else:
        try:
            arts = np.asarray([world.artwork_index[a] for a in artwork_ids], dtype=np.int64)
        except KeyError as exc:
            raise UnknownIdError(f"Artwork not in this world: {exc.args[0]!r}.") from None
    events = Events(
        member=m,
        title=np.full(m.size, t, dtype=np.int64),
        artworks=np.broadcast_to(arts, (m.size, arts.size)).copy(),
        device=world.member_device[m],
        timestamp=np.full(m.size, world.now),
        interacted=world.interacted[m, t],
        recommender=np.zeros(m.size),
    )
    return world.expected(events)


def _title(world: World, title_id: str) -> int:
    try:
        return world.title_index[title_id]
    except KeyError:
        raise UnknownIdError(f"Title not in this world: {title_id!r}.") from None


def _index(names: Sequence[str], name: str, what: str) -> int:
    try:
        return list(names).index(name)
    except ValueError:
        raise ValidationError(f"Unknown {what} {name!r}; this world has {', '.join(names)}.") from None
