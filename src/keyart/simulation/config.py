"""The simulated world's parameters: one frozen, documented, versioned config (see docs/simulation.md).

Every number that shapes the hidden truth lives here, so a run is fully described by
``(WorldConfig, seed)``. Bump ``WORLD_CONFIG_VERSION`` whenever the meaning of a field or the generator
changes, so results quoted with a version stay reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

from keyart.errors import ValidationError
from keyart.params import Interval, Seed, check_param

WORLD_CONFIG_VERSION = 2  # 2: drift tastes and arrivals drawn from their own generators

# Vocabularies. Spellings are chosen so that the default ``FeatureConfig`` hashes them into distinct
# buckets (these vocabularies are smaller than the bucket counts): the demo then measures learning, not
# hash collisions. A real catalog's open vocabulary will collide; see docs/simulation.md.
GENRES: tuple[str, ...] = (
    "comedy",
    "romance",
    "drama",
    "action",
    "thriller",
    "sci-fi",
    "animation",
    "fantasy",
    "documentary",
    "kids",
    "adventure",
    "true-crime",
)
STYLES: tuple[str, ...] = ("close-up", "ensemble", "landscape", "text-heavy", "moody")
DEVICES: tuple[str, ...] = ("tv", "mobile", "browser", "tablet")
COUNTRIES: tuple[tuple[str, str], ...] = (
    ("US", "en"),
    ("BR", "pt"),
    ("IN", "hi"),
    ("FR", "fr"),
    ("JP", "ja"),
    ("DE", "de"),
)
# Free artwork tags (off in the default world: ``n_tags = 0``); zoo worlds use the first ``n_tags``.
TAGS: tuple[str, ...] = (
    "dark",
    "bright",
    "face",
    "logo",
    "action-shot",
    "couple",
    "group",
    "silhouette",
    "minimal",
    "vintage",
    "neon",
    "award",
)
# Families of a generic hidden cross (``WorldConfig.crosses``): an observable context family x an artwork
# family, with a table of effects drawn per world (see docs/simulation.md, "The world zoo").
CONTEXT_FAMILIES: tuple[str, ...] = ("device", "country", "hour", "weekday", "prior", "recommender", "genre")
ARTWORK_FAMILIES: tuple[str, ...] = ("theme", "style", "tag", "cast_count")
HOUR_BUCKETS = 8  # the truth's hour of day: 3-hour blocks (UTC)
RECOMMENDER_EDGES: tuple[float, ...] = (1.0, 2.0)  # the truth's recommender-score buckets (low, mid, high)


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of a simulated catalog, member population and hidden ground truth.

    Genre taste: a member's taste is a distribution over genres (Dirichlet with total concentration
    ``genre_concentration * n_genres``, so most members have one or two strong genres), scaled by
    ``genre_taste_scale`` and centred; the play history samples titles in proportion to that distribution,
    so the history's genre shares estimate it. Logit-scale effects: P(play) = sigmoid(title part +
    artwork part), where the artwork part is
    ``base appeal + theme_weight * genre taste . theme + cast_weight * cast taste . featured cast
    + style taste (member's own + device x style) + clickbait_play_boost * clickbait``, multiplied by
    ``known_title_damping`` when the member already interacted with the title. P(quality play | play) =
    sigmoid(quality_intercept + quality_title_weight * title affinity + quality_theme_weight * theme match
    - clickbait_quality_penalty * clickbait). Reward = quality play.

    The zoo's extensions (``keyart.simulation.zoo``) are off by default: ``n_tags`` free artwork tags
    (about ``tags_per_artwork`` each), ``member_activity_sd`` (the activity skew, 0.6 as always) and
    ``crosses``, (context family, artwork family, sd) triples, each a hidden table of effects added to the
    artwork part (see docs/simulation.md, "The world zoo").
    """

    seed: int = 0
    # catalog
    n_genres: int = 12
    n_cast: int = 120
    n_titles: int = 300
    min_pool: int = 3
    max_pool: int = 24
    mean_extra_pool: float = 6.0
    min_title_cast: int = 3
    max_title_cast: int = 6
    clickbait_fraction: float = 0.05
    # members
    n_members: int = 20_000
    genre_concentration: float = 0.25
    genre_taste_scale: float = 3.5
    genre_taste_noise: float = 0.05
    liked_cast: int = 3
    liked_cast_weight: float = 1.2
    style_taste_noise: float = 0.0
    mean_history: float = 40.0
    min_history: int = 8
    history_cast_weight: float = 1.0
    browsed_titles: int = 4
    primary_device_share: float = 0.8
    # pages
    page_size: int = 6
    page_taste_sharpness: float = 0.3
    page_interacted_boost: float = 0.8
    recommender_noise: float = 0.5
    requests_per_day: float = 20_000.0
    start_time: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    # ground truth: plays
    play_intercept: float = -4.6
    title_popularity_sd: float = 0.4
    title_affinity_weight: float = 0.5
    base_appeal_sd: float = 0.1
    theme_weight: float = 2.0
    cast_weight: float = 1.0
    device_style_sd: float = 1.3
    text_language_penalty: float = 0.3
    clickbait_play_boost: float = 0.9
    known_title_damping: float = 0.3
    # ground truth: quality plays
    quality_intercept: float = 0.2
    quality_title_weight: float = 0.8
    quality_theme_weight: float = 0.5
    clickbait_quality_penalty: float = 2.5
    # non-stationarity (all off by default)
    taste_drift_per_day: float = 0.0
    n_new_titles: int = 0
    n_new_artworks: int = 0  # at most one per launch title with room in its pool
    arrival_day: float = 1.0
    # zoo extensions (all off by default, so the default world is unchanged): artwork tags, member
    # activity skew, and generic hidden crosses (context family, artwork family, effect sd)
    n_tags: int = 0
    tags_per_artwork: float = 1.0
    member_activity_sd: float = 0.6
    crosses: tuple[tuple[str, str, float], ...] = ()

    _constraints: ClassVar[dict[str, Any]] = {
        "seed": Seed(),
        "n_genres": Interval(2, len(GENRES), integer=True),
        "n_cast": Interval(4, None, integer=True),
        "n_titles": Interval(2, None, integer=True),
        "min_pool": Interval(1, None, integer=True),
        "max_pool": Interval(1, None, integer=True),
        "mean_extra_pool": Interval(0, None),
        "min_title_cast": Interval(0, None, integer=True),
        "max_title_cast": Interval(0, None, integer=True),
        "clickbait_fraction": Interval(0, 1),
        "n_members": Interval(1, None, integer=True),
        "genre_concentration": Interval(0, None, closed="neither"),
        "liked_cast": Interval(0, None, integer=True),
        "mean_history": Interval(0, None),
        "min_history": Interval(0, None, integer=True),
        "browsed_titles": Interval(0, None, integer=True),
        "primary_device_share": Interval(0, 1),
        "page_size": Interval(1, None, integer=True),
        "requests_per_day": Interval(0, None, closed="neither"),
        "known_title_damping": Interval(0, 1),
        "taste_drift_per_day": Interval(0, None),
        "n_new_titles": Interval(0, None, integer=True),
        "n_new_artworks": Interval(0, None, integer=True),
        "arrival_day": Interval(0, None),
        "n_tags": Interval(0, len(TAGS), integer=True),
        "tags_per_artwork": Interval(0, None),
        "member_activity_sd": Interval(0, None),
    }

    def __post_init__(self) -> None:
        for name, constraint in self._constraints.items():
            check_param("WorldConfig", name, getattr(self, name), constraint)
        object.__setattr__(self, "crosses", _check_crosses(self.crosses))
        if self.max_pool < self.min_pool:
            raise ValidationError(
                f"The 'max_pool' parameter of WorldConfig must be >= min_pool ({self.min_pool}). "
                f"Got {self.max_pool}."
            )
        if self.max_title_cast < self.min_title_cast:
            raise ValidationError(
                f"The 'max_title_cast' parameter of WorldConfig must be >= min_title_cast "
                f"({self.min_title_cast}). Got {self.max_title_cast}."
            )
        if self.page_size > self.n_titles:
            raise ValidationError(
                f"The 'page_size' parameter of WorldConfig must be <= n_titles ({self.n_titles}). "
                f"Got {self.page_size}."
            )

    @property
    def version(self) -> int:
        return WORLD_CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field plus the config version."""
        return {"world_config_version": WORLD_CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        """Inverse of ``to_dict``; refuses another config version."""
        data = dict(data)
        version = data.pop("world_config_version", None)
        if version != WORLD_CONFIG_VERSION:
            raise ValidationError(f"world_config_version must be {WORLD_CONFIG_VERSION}. Got {version!r}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"Unknown WorldConfig fields: {unknown}.")
        return cls(**data)

    def with_(self, **changes: Any) -> WorldConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def _check_crosses(crosses: Any) -> tuple[tuple[str, str, float], ...]:
    """``crosses`` as a tuple of (context family, artwork family, sd) tuples (a JSON list round-trips)."""
    out = []
    for entry in crosses:
        try:
            ctx, art, sd = entry
            sd = float(sd)
        except (TypeError, ValueError):
            raise ValidationError(
                f"crosses must hold (context family, artwork family, sd) triples. Got {entry!r}."
            ) from None
        if ctx not in CONTEXT_FAMILIES or art not in ARTWORK_FAMILIES or not 0 <= sd < float("inf"):
            raise ValidationError(
                f"A cross must be (one of {', '.join(CONTEXT_FAMILIES)}; "
                f"one of {', '.join(ARTWORK_FAMILIES)}; a finite sd >= 0). Got {entry!r}."
            )
        out.append((str(ctx), str(art), sd))
    if len({(c, a) for c, a, _ in out}) != len(out):
        raise ValidationError(f"crosses must not repeat a (context, artwork) pair. Got {crosses!r}.")
    return tuple(out)


def demo_config(seed: int = 0) -> WorldConfig:
    """The world of ``keyart demo`` and of the 200,000-request benchmark."""
    return WorldConfig(seed=seed)


def small_config(seed: int = 0) -> WorldConfig:
    """A small world for fast tests: same truth model, fewer titles and members."""
    return WorldConfig(seed=seed, n_titles=80, n_cast=40, n_members=2_000, mean_history=25.0, page_size=5)
