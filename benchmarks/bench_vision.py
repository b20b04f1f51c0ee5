"""Milliseconds per image of ``keyart.vision.image_features`` (read, header check, decode, all features and
the perceptual hash) on one core, for files of the sizes and formats artwork comes in: scikit-image's
sample photographs as they ship (512 x 512 PNG, 600 x 400 JPEG, ...) and the same pictures enlarged to a
1920 x 1080 JPEG, a 2000 x 3000 poster JPEG, a 1920 x 1080 PNG and a 1920 x 1080 WebP. One process, OpenCV
and BLAS on one thread; medians over interleaved rounds, the first (cold: cascade loading) call untimed.

    python benchmarks/bench_vision.py [--quick]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402

from keyart.simulation.experiments import format_table  # noqa: E402
from keyart.vision import image_features  # noqa: E402

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".webp": "WebP"}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field")
#: (label, file suffix, size as (width, height) or None for the sample's own)
KINDS = (
    ("as shipped", ".png", None),
    ("as shipped", ".jpg", None),
    ("1920 x 1080 JPEG", ".jpg", (1920, 1080)),
    ("2000 x 3000 JPEG", ".jpg", (2000, 3000)),
    ("1920 x 1080 PNG", ".png", (1920, 1080)),
    ("1920 x 1080 WebP", ".webp", (1920, 1080)),
)


def photo(name: str) -> np.ndarray:
    """A sample photograph as BGR, for OpenCV's writer."""
    img = getattr(skimage.data, name)()
    img = np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]
    return np.ascontiguousarray(img[..., ::-1])


def make_files(folder: Path, photos: tuple[str, ...]) -> dict[str, list[Path]]:
    """The benchmark's image files, by kind."""
    out: dict[str, list[Path]] = {}
    for label, suffix, size in KINDS:
        kind = f"{label} {FORMATS[suffix]}" if size is None else label
        for name in photos:
            img = photo(name)
            if size is not None:
                img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
            path = folder / f"{name}-{kind.replace(' ', '_')}{suffix}"
            cv2.imwrite(str(path), img)
            out.setdefault(kind, []).append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two photographs, two rounds: a smoke run")
    args = ap.parse_args(argv)
    photos, rounds = (PHOTOS[:2], 2) if args.quick else (PHOTOS, 7)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), photos)
        image_features(files[next(iter(files))][0])  # cold start: the face cascade is loaded once
        times: dict[str, list[float]] = {kind: [] for kind in files}
        for _ in range(rounds):
            for kind, paths in files.items():
                for path in paths:
                    t0 = time.perf_counter()
                    image_features(path)
                    times[kind].append(time.perf_counter() - t0)
    rows = [
        {"files": kind, "images": len(files[kind]), "ms per image (median)": 1e3 * statistics.median(ts)}
        for kind, ts in times.items()
    ]
    every = [t for ts in times.values() for t in ts]
    rows.append(
        {
            "files": "all",
            "images": len(every) // rounds,
            "ms per image (median)": 1e3 * statistics.median(every),
        }
    )
    print(f"$ python benchmarks/bench_vision.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print(
        f"python {platform.python_version()}, opencv {cv2.__version__}, numpy {np.__version__}, one thread; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end; {rounds} rounds"
    )
    print(format_table(rows, digits=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
