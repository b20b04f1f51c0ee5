"""A world whose artworks are images: each artwork is drawn as a picture from hidden visual attributes,
members respond to those attributes, and keyart sees only the pixels (through ``keyart.vision``).

Every artwork of an ``ImageWorld`` has five hidden visual attributes in [-1, 1] (``VISUAL_ATTRIBUTES``):
its palette's warmth (cool blues to warm oranges), brightness, a close-up (one large face filling the
frame, +1) or a group (three to five small figures, -1), lettering (no title text, -1, up to three lines
of it, +1) and saturation. The artwork is rendered from them (numpy and OpenCV's drawing functions) as a
small PNG, written to a folder, and the folder is read with the real vision pipeline
(``keyart.vision.batch.extract_catalog``) into the catalog's artwork embeddings. The hidden attributes
never reach the catalog: the image files are named after the artwork ids, and a policy sees the tags
people typed (launch artworks only), the pixels' features and nothing else.

Members respond to the attributes: a member's visual taste is a main effect shared by everyone, plus a
part driven by the member's genre taste (a hidden genre x attribute table, so that genre fans lean the
same way and the play history, which reveals genre taste, makes it learnable), plus the member's own
noise. The taste dotted with the artwork's attributes is added to the artwork's logit, like the theme
and style effects of ``World``.

New artworks (the titles arriving with ``n_new_titles``, the new artworks of launch titles with
``n_new_artworks``) arrive with their pixels but without tags: no theme, featured cast or style in the
catalog (their hidden ones still act in the truth). Everything is deterministic by the world's seed; the
visual attributes, tastes and the images' texture draw from generators of their own, so the underlying
``World`` of a config is exactly the one ``World(config)`` builds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from keyart.catalog import Artwork, Catalog
from keyart.errors import ValidationError
from keyart.params import Interval, check_param
from keyart.simulation.config import WorldConfig
from keyart.simulation.records import Events
from keyart.simulation.world import World

VISUAL_ATTRIBUTES: tuple[str, ...] = ("warmth", "brightness", "closeup", "lettering", "saturation")
"""The hidden visual attributes of an image world's artworks, each in [-1, 1]."""

IMAGE_WORLD_VERSION = 1
"""Bumped whenever the rendering or the visual truth changes meaning (results quote it)."""

#: Development seeds of the image world (anything may be tried on them) and held-out seeds (only run to
#: report: ``benchmarks/bench_vision_cold_start.py`` without ``--dev``).
IMAGE_DEV_SEEDS: tuple[int, ...] = tuple(range(10))
IMAGE_HELD_OUT_SEEDS: tuple[int, ...] = tuple(range(2_000_000, 2_000_020))

# palette ends: a warm orange and a cool blue (RGB, 0-1), mixed by warmth
_WARM = np.array([0.95, 0.45, 0.12])
_COOL = np.array([0.12, 0.40, 0.95])
_SKIN = np.array([224.0, 178.0, 146.0])
_LETTERS = "ABCDEFGHIJKLMNOPRSTUVWY"


@dataclass(frozen=True)
class ImageConfig:
    """The image part of an image world: picture size and how members respond to the visual attributes.

    A member's visual taste is ``main + genre_taste @ L + noise``: ``main`` ~ N(0, ``main_sd``) per
    attribute (shared by everyone), ``L`` a hidden (genres x attributes) table ~ N(0, ``genre_sd`` /
    ``WorldConfig.genre_taste_scale``) (so a member with one strong genre has a genre part of about
    ``genre_sd`` per attribute), noise ~ N(0, ``taste_noise``). ``weight`` scales the effect on the logit.
    """

    width: int = 160
    height: int = 240
    weight: float = 1.0
    main_sd: float = 0.2
    genre_sd: float = 0.6
    taste_noise: float = 0.2

    _constraints: ClassVar[dict[str, Any]] = {
        "width": Interval(64, 1024, integer=True),
        "height": Interval(64, 1024, integer=True),
        "weight": Interval(0, None),
        "main_sd": Interval(0, None),
        "genre_sd": Interval(0, None),
        "taste_noise": Interval(0, None),
    }

    def __post_init__(self) -> None:
        for name, constraint in self._constraints.items():
            check_param("ImageConfig", name, getattr(self, name), constraint)


def image_world_config(seed: int = 0, **overrides: Any) -> WorldConfig:
    """The world of the cold-start experiment: 60 launch titles, 20 titles arriving (pools of new
    artworks, pixels only) and new artworks on 10 launch titles, 5,000 members, pages of 5; plays more
    common than in the demo world (play intercept -3: a take fraction of about 6%), theme and cast weigh a
    quarter and a half of the default world's (the images carry most of the artwork effect). ``arrival_day``
    sets the release (1 day = 20,000 requests); ``overrides`` change any field."""
    base: dict[str, Any] = {
        "seed": seed,
        "n_titles": 60,
        "n_cast": 40,
        "n_members": 5_000,
        "mean_history": 25.0,
        "page_size": 5,
        "max_pool": 12,
        "mean_extra_pool": 4.0,
        "play_intercept": -3.0,
        "theme_weight": 0.5,
        "cast_weight": 0.5,
        "n_new_titles": 20,
        "n_new_artworks": 10,
        "arrival_day": 1.0,
    }
    return WorldConfig(**{**base, **overrides})


class ImageWorld(World):
    """A ``World`` whose artworks are images (see the module docstring).

    ``images``: the folder the PNGs are written to (created if needed; the vision cache lives there too,
    so a second world of the same seed reuses the features). ``jobs``: processes for the extraction.
    ``visual_attributes`` (A, 5) and ``visual_taste`` (members, 5) are the hidden truth.
    """

    def __init__(
        self,
        config: WorldConfig | None = None,
        images: str | Path | None = None,
        image_config: ImageConfig | None = None,
        *,
        jobs: int = 1,
    ) -> None:
        super().__init__(config if config is not None else image_world_config())
        if images is None:
            raise ValidationError("ImageWorld needs a folder to write its images to (images=...).")
        self.image_config = image_config if image_config is not None else ImageConfig()
        if not isinstance(self.image_config, ImageConfig):
            raise ValidationError(f"image_config must be an ImageConfig. Got {type(image_config).__name__}.")
        self.images = Path(images)
        root = np.random.SeedSequence([self.config.seed, 0x696D6167])
        s_attrs, s_taste, s_pixels = root.spawn(3)
        self.visual_attributes = draw_visual_attributes(np.random.default_rng(s_attrs), len(self.artwork_ids))
        self.visual_taste = self._draw_visual_taste(np.random.default_rng(s_taste))
        self._render(s_pixels)
        self._extract(jobs)
        self.reset()

    # ---- hidden truth -------------------------------------------------------------------------
    def _draw_visual_taste(self, rng: np.random.Generator) -> np.ndarray:
        c, ic = self.config, self.image_config
        v = len(VISUAL_ATTRIBUTES)
        main = rng.normal(0.0, ic.main_sd, v)
        table = rng.normal(0.0, ic.genre_sd / c.genre_taste_scale, (c.n_genres, v))
        noise = rng.normal(0.0, ic.taste_noise, (c.n_members, v))
        return main[None, :] + self.genre_taste @ table + noise

    def _artwork_extra(self, ev: Events, art: np.ndarray) -> np.ndarray | None:
        """(n, K) the visual effect: the member's visual taste . the artwork's attributes."""
        taste = self.visual_taste[ev.member]  # (n, V)
        return self.image_config.weight * np.einsum("nkv,nv->nk", self.visual_attributes[art], taste)

    # ---- pictures -----------------------------------------------------------------------------
    def image_name(self, artwork: int) -> str:
        """The file name of an artwork's picture: its id (nothing of its hidden attributes)."""
        return f"{self.artwork_ids[artwork]}.png"

    def _render(self, seeds: np.random.SeedSequence) -> None:
        import cv2

        self.images.mkdir(parents=True, exist_ok=True)
        ic = self.image_config
        for a, child in enumerate(seeds.spawn(len(self.artwork_ids))):
            rgb = render_artwork(self.visual_attributes[a], np.random.default_rng(child), ic.width, ic.height)
            path = self.images / self.image_name(a)
            png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
            if not path.exists() or path.read_bytes() != png:
                path.write_bytes(png)

    def _extract(self, jobs: int) -> None:
        """Features of every picture into the artworks' embeddings, standardized over the launch artworks'
        pictures (what a service has when it first extracts; the arrivals are read in the same units, as
        ``keyart vision extract`` does with its saved scaling); arrivals lose their tags."""
        from keyart.vision.batch import extract_catalog

        start = self.config.start_time
        artworks = []
        for a, art in enumerate(self._artworks):
            if self.art_arrival[a] > start:  # new: pixels only, nobody has tagged it yet
                art = Artwork(art.artwork_id, art.title_id)
            artworks.append(dataclasses.replace(art, image=self.image_name(a)))
        launch = [art for a, art in enumerate(artworks) if self.art_arrival[a] <= start]
        scaling = extract_catalog(Catalog(self._titles, launch), self.images, jobs=jobs).scaling
        result = extract_catalog(Catalog(self._titles, artworks), self.images, jobs=jobs, scaling=scaling)
        if result.failed:
            raise ValidationError(f"The image world's pictures failed: {dict(result.failed)}.")
        self.extraction = result
        self._artworks = [result.catalog.artworks[a.artwork_id] for a in artworks]

    @property
    def new_artworks(self) -> np.ndarray:
        """(A,) bool: the artworks that arrive after the start (pixels only)."""
        return self.art_arrival > self.config.start_time

    def __repr__(self) -> str:
        return f"Image{super().__repr__()}"


def draw_visual_attributes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 5) hidden attributes in [-1, 1]: warmth, brightness and saturation uniform, close-up +-1 with
    equal odds, lettering from 0-3 lines of text (-1, -1/3, 1/3, 1)."""
    out = np.empty((n, len(VISUAL_ATTRIBUTES)))
    out[:, 0] = rng.uniform(-1.0, 1.0, n)
    out[:, 1] = rng.uniform(-1.0, 1.0, n)
    out[:, 2] = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    out[:, 3] = rng.integers(0, 4, n) / 1.5 - 1.0
    out[:, 4] = rng.uniform(-1.0, 1.0, n)
    return out


def render_artwork(
    attributes: np.ndarray, rng: np.random.Generator, width: int = 160, height: int = 240
) -> np.ndarray:
    """An artwork's picture (height, width, 3) uint8 RGB from its five attributes (``VISUAL_ATTRIBUTES``).

    Background: a vertical gradient of the palette (warm orange and cool blue mixed by warmth), its
    saturation and brightness set by the attributes, with a smooth texture; figures: one large face (a
    close-up) or three to five small figures (a group); lettering: 0-3 lines of outlined capitals near
    the bottom.
    """
    import cv2

    warmth, bright, closeup, lettering, sat = (float(x) for x in attributes)
    h, w = height, width
    mix = (warmth + 1.0) / 2.0
    colour = mix * _WARM + (1.0 - mix) * _COOL
    grey = colour.mean()
    s = 0.25 + 0.375 * (sat + 1.0)  # 0.25 .. 1: how far from grey
    v = 0.35 + 0.25 * (bright + 1.0)  # 0.35 .. 0.85: the mean level
    base = grey + s * (colour - grey)
    base = base * (v / max(base.mean(), 1e-6))
    ramp = np.linspace(1.12, 0.88, h)[:, None, None]
    coarse = rng.normal(0.0, 0.05, (6, 4, 1))
    texture = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, 1)
    img = np.clip((base[None, None, :] * ramp + texture) * 255.0, 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    tone = float(rng.uniform(0.8, 1.1))
    if closeup > 0:
        r = int(w * rng.uniform(0.30, 0.36))
        cx, cy = w // 2 + int(rng.integers(-6, 7)), int(h * rng.uniform(0.40, 0.48))
        _face(cv2, img, cx, cy, r, tone)
    else:
        k = int(rng.integers(3, 6))
        xs = (np.arange(k) + 0.5) * w / k + rng.uniform(-4, 4, k)
        for x in xs:
            r = int(w * rng.uniform(0.07, 0.09))
            cy = int(h * rng.uniform(0.45, 0.6))
            body = tuple(int(c) for c in 0.45 * _SKIN * tone)
            cv2.ellipse(img, (int(x), cy + 3 * r), (int(1.4 * r), 2 * r), 0, 180, 360, body, -1)
            _face(cv2, img, int(x), cy, r, tone)
    lines = round((lettering + 1.0) * 1.5)
    for i in range(lines):
        y0 = int(h * 0.86) - i * 22
        word = "".join(rng.choice(list(_LETTERS), size=int(rng.integers(6, 9))))
        x0 = int(rng.integers(8, 16))
        cv2.putText(img, word, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (15, 15, 15), 4, cv2.LINE_AA)
        cv2.putText(img, word, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (250, 250, 240), 2, cv2.LINE_AA)
    return img


def _face(cv2: Any, img: np.ndarray, cx: int, cy: int, r: int, tone: float) -> None:
    """A simple frontal face of radius ``r`` at (cx, cy): hair, skin, brows, eyes, nose and mouth."""
    skin = tuple(int(c) for c in np.clip(_SKIN * tone, 0, 255))
    dark = (40, 28, 22)
    cv2.ellipse(img, (cx, cy - r // 5), (int(1.05 * r), int(1.2 * r)), 0, 180, 360, dark, -1)
    cv2.ellipse(img, (cx, cy), (int(0.85 * r), int(1.1 * r)), 0, 0, 360, skin, -1)
    ex, ey = int(0.35 * r), int(0.2 * r)
    for sx in (-1, 1):
        cv2.ellipse(img, (cx + sx * ex, cy - ey), (max(2, r // 6), max(1, r // 10)), 0, 0, 360, dark, -1)
        cv2.line(
            img,
            (cx + sx * ex - r // 5, cy - int(0.42 * r)),
            (cx + sx * ex + r // 5, cy - int(0.42 * r)),
            dark,
            max(1, r // 14),
        )
    cv2.line(img, (cx, cy - ey // 2), (cx - r // 12, cy + int(0.25 * r)), (150, 100, 80), max(1, r // 16))
    cv2.ellipse(img, (cx, cy + int(0.5 * r)), (int(0.3 * r), max(1, r // 10)), 0, 0, 360, (140, 50, 50), -1)
