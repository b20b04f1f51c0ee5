"""A new model of the service learns on the catalog's exact vocabularies and grows with the catalog and the
requests: every genre, cast member, style and tag has a column of its own, countries, languages and
devices get theirs as requests carry them, and the workers serve the grown model's rows."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson

from keyart.catalog import Artwork, Catalog, Title
from keyart.features import Featurizer
from keyart.service import catalog_store, snapshots
from keyart.service.config import ServiceConfig
from keyart.service.engine import Engine
from keyart.service.learner import Learner
from keyart.service.metrics import Metrics
from keyart.service.parsing import parse_page
from test_service_support import GENRES, make_config, page_body, prepare, small_catalog

WINDOW = 0.5


def _serve(config: ServiceConfig, start: float, pages: list[dict]) -> None:
    """Decide ``pages`` half a second apart from event time ``start``, then one more 10 s later that
    closes their attribution windows."""
    engine = Engine(config, Metrics())
    engine.refresh(True)
    try:
        for k, body in enumerate([*pages, pages[-1]]):
            at = start + 0.5 * k if k < len(pages) else start + 0.5 * k + 10.0
            body = {**body, "context": {**body["context"], "timestamp": at}}
            result = engine.decide(parse_page(orjson.dumps(body), config.limits, time.time()))
            assert result is not None and result.reason is None, result and result.reason
    finally:
        engine.close()


def _learn_all(learner: Learner) -> None:
    while any(learner.ingest().values()):
        pass
    while learner.learn() or learner.capped:
        pass


def _grown_catalog(genres: tuple[str, ...] = ("western",)) -> Catalog:
    """``small_catalog`` and, per genre it did not have, a title of that genre whose first artwork features
    a cast member (titles t8, t9, ...)."""
    base = small_catalog()
    titles, arts = list(base.titles.values()), list(base.artworks.values())
    for k, genre in enumerate(genres):
        t, star = f"t{8 + k}", f"Star {genre}"
        titles.append(Title(t, name=f"Title {8 + k}", genres=(genre,), cast=(star,), runtime_minutes=90.0))
        arts.append(Artwork(f"{t}-a0", t, theme_genres=(genre,), featured_cast=(star,), style="style0"))
        arts.append(Artwork(f"{t}-a1", t, theme_genres=("drama",), style="style1"))
    return Catalog(titles, arts)


def test_a_new_model_learns_the_catalogs_vocabularies_and_grows_with_new_values(tmp_path: Path) -> None:
    config = prepare(make_config(tmp_path / "state", attribution_window_seconds=WINDOW))
    now = time.time()
    _serve(config, now - 120, [page_body(f"m{i}") for i in range(12)])  # country US, device tv
    learner = Learner(config)
    try:
        _learn_all(learner)
        model = learner.primary
        features = model.features_
        assert learner.rewards_learned > 0 and features is not None
        assert features.vocabulary("genre") == tuple(sorted(GENRES)) and features.genre_buckets == 5
        assert features.vocabulary("style") == ("style0", "style1", "style2")
        assert features.vocabulary("country") == ("US",) and features.vocabulary("device") == ("tv",)
        width = model.dim_
        # the workers serve the published model on the rows it learned on
        served = snapshots.load_newest_good(config.snapshots_dir).generation
        assert served is not None and config.features_for(served.primary).same_columns(features)

        # a title of a new genre with a new cast member, and requests from a new country
        catalog_store.import_catalog(config.catalog_path, _grown_catalog())
        titles = [f"t{i}" for i in range(9)]
        pages = [page_body(f"m{i}", titles=titles, country="FR", device="phone") for i in range(12)]
        _serve(config, now - 60, pages)
        _learn_all(learner)
        grown = learner.primary.features_
        assert grown is not None and grown.vocabulary("genre") == (*sorted(GENRES), "western")
        assert "Star western" in grown.vocabulary("cast")
        assert grown.vocabulary("country") == ("US", "FR") and grown.vocabulary("device") == ("tv", "phone")
        assert grown.genre_buckets == 6 and learner.primary.dim_ > width
        served = snapshots.load_newest_good(config.snapshots_dir).generation
        assert served is not None and config.features_for(served.primary).same_columns(grown)
        # a page of the new title scores on its own columns: its rows differ by artwork theme there
        page = Featurizer(_grown_catalog(), grown).page(
            parse_page(orjson.dumps(pages[0]), config.limits, now).context, ["t8"], "probe"
        )
        bucket = grown.vocabulary("genre").index("western")  # a known token's bucket is its place
        western = grown.layout.feature_names().index(f"theme[{bucket}]")
        assert np.array_equal(page.X[0, :2, western], [1.0, 0.0])

        # and again, with a genre that sorts first: appended after what the model already has
        catalog_store.import_catalog(config.catalog_path, _grown_catalog(("western", "action")))
        titles = [f"t{i}" for i in range(10)]
        _serve(config, now - 30, [page_body(f"m{i}", titles=titles) for i in range(12)])
        _learn_all(learner)
        again = learner.primary.features_
        assert again is not None and again.vocabulary("genre") == (*sorted(GENRES), "western", "action")
        assert again.vocabulary("country") == ("US", "FR")
    finally:
        learner.close()
