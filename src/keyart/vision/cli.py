"""``keyart vision extract``: a catalog's image features into its artworks' embeddings (docs/vision.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from keyart.vision.features import Scaling

vision_app = typer.Typer(
    no_args_is_help=True,
    help="Image features of artworks, from their pixels (keyart[vision], docs/vision.md).",
)


def _save_format(target: Path, source: Path) -> str:
    """How to write the catalog back: json for a .json path, else the table format already in the target
    folder, or in the source folder, else parquet."""
    from keyart.catalog_files import TABLE_FORMATS

    if target.suffix.lower() == ".json":
        return "json"
    for folder in (target, source):
        found = [f for s, f in TABLE_FORMATS.items() if f != "json" and (folder / f"artworks{s}").is_file()]
        if found:
            return found[0]
    return "parquet"


#: The scaling's file in the images folder: fitted to the catalog's images on the first run and kept, so
#: later runs write new artworks in the same units; remove it to fit the scaling again (then retrain).
SCALING_NAME = ".keyart-vision-scaling.json"


def _read_scaling(path: Path) -> Scaling | None:
    """The scaling saved at ``path``; None when there is none, or it was fitted on features of another
    version or made for another embedding version (it is fitted again). A file that is not a scaling is an
    error (exit 4), nothing written."""
    import json

    from keyart.errors import ValidationError
    from keyart.vision.features import EMBEDDING_VERSION, FEATURE_VERSION, Scaling

    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        found = Scaling.from_dict(data)
        if data.get("embedding_version") != EMBEDDING_VERSION:
            return None
    except (OSError, json.JSONDecodeError, ValidationError, AttributeError) as exc:
        raise ValidationError(
            f"{path}: not a keyart vision scaling ({exc}); remove it to fit a new one."
        ) from None
    return found if found.feature_version == FEATURE_VERSION else None


def _write_scaling(path: Path, scaling: Scaling) -> None:
    """Save ``scaling`` as JSON at ``path`` (folders made as needed)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scaling.to_dict(), indent=1) + "\n")


@vision_app.command("extract")
def extract_command(
    catalog: Annotated[Path, typer.Argument(help="A catalog: a JSON file or a directory of tables.")],
    images: Annotated[
        Path, typer.Option("--images", help="The folder that artworks' relative image paths are under.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the catalog (default: over CATALOG, in its own form)."),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            help="The Parquet cache of features by image content hash (default: "
            "IMAGES/.keyart-vision-cache.parquet).",
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Processes computing features in parallel.")] = 1,
    duplicate_distance: Annotated[
        int,
        typer.Option(
            "--duplicate-distance",
            min=0,
            max=64,
            help="Report two artworks of a title as near-duplicates when their perceptual hashes differ in "
            "at most this many of 64 bits.",
        ),
    ] = 10,
) -> None:
    """Compute the image features of every artwork with an image (only new or changed images; the rest
    from the cache), write them into the catalog's embeddings, standardized over the catalog's images,
    and report bad files (on stderr: the rest is done) and near-duplicate artworks."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from keyart.catalog import Catalog
    from keyart.vision.batch import extract_catalog
    from keyart.vision.features import EMBEDDING_VERSION, FEATURE_VERSION

    cat = Catalog.load(catalog)
    target = out or catalog
    scaling_path = images / SCALING_NAME
    kept = _read_scaling(scaling_path)
    columns = (TextColumn("images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("images", total=None)
        result = extract_catalog(
            cat,
            images,
            cache=cache,
            jobs=jobs,
            max_distance=duplicate_distance,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            scaling=kept,
        )
    if kept is None:
        _write_scaling(scaling_path, result.scaling)
    result.catalog.save(target, _save_format(target, catalog))
    for artwork_id, error in result.failed.items():
        print(f"keyart: vision: artwork {artwork_id!r}: {error}", file=sys.stderr)
    for title_id, a, b, d in result.duplicates:
        typer.echo(
            f"near-duplicates in title {title_id!r}: {a!r} and {b!r} (perceptual hashes {d} bits apart)"
        )
    with_features = len(cat.artworks) - len(result.without_image) - len(result.failed)
    typer.echo(
        f"{with_features} artworks with image features (version {FEATURE_VERSION}): {result.computed} images "
        f"computed, {result.cached} from the cache; {len(result.failed)} failed, "
        f"{len(result.without_image)} without an image (no embedding); written to {target}"
    )
    fitted = (
        f"fitted on {result.scaling.images} images" if result.scaling.images else "fixed (too few images)"
    )
    typer.echo(
        f"embedding version {EMBEDDING_VERSION}: scaling {fitted}, "
        f"{'kept from' if kept is not None else 'saved to'} {scaling_path}"
    )
    if result.removed_embeddings:
        typer.echo(f"{len(result.removed_embeddings)} earlier embeddings removed (artworks without features)")
