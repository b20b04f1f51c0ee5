"""``keyart vision extract``: a catalog's image features into its artworks' embeddings (docs/vision.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

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
    from the cache), write them into the catalog's embeddings, and report bad files (on stderr: the rest
    is done) and near-duplicate artworks."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from keyart.catalog import Catalog
    from keyart.vision.batch import extract_catalog
    from keyart.vision.features import FEATURE_VERSION

    cat = Catalog.load(catalog)
    target = out or catalog
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
        )
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
    if result.removed_embeddings:
        typer.echo(f"{len(result.removed_embeddings)} earlier embeddings removed (artworks without features)")
