"""Images for keyart.vision's tests: scikit-image's sample photographs (shipped inside its wheel, no
download) and generated pictures whose properties are known by construction, plus each kind of bad file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import skimage.data


def write(path: Path, rgb: np.ndarray, *params: int) -> Path:
    """Write an RGB array as the image file ``path`` (format from its suffix)."""
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), list(params)), path
    return path


def sample(name: str) -> np.ndarray:
    """A scikit-image sample photograph as RGB (astronaut: a portrait; coffee: a cup, no one)."""
    img = getattr(skimage.data, name)()
    return np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]


def flat(rgb: tuple[int, int, int], size: tuple[int, int] = (300, 400)) -> np.ndarray:
    """An image of one colour, ``size`` = (height, width)."""
    out = np.empty((*size, 3), dtype=np.uint8)
    out[:] = rgb
    return out


def disk(radius: int, centre: tuple[int, int] = (150, 200), size: tuple[int, int] = (400, 300)) -> np.ndarray:
    """A red filled disk on a dark ground: a large radius fills the frame (a close-up), a small one does
    not; ``centre`` is (x, y)."""
    out = flat((30, 30, 30), size)
    cv2.circle(out, centre, radius, (200, 60, 60), -1)
    return out


def lettering() -> np.ndarray:
    """Three lines of dark lettering on a light ground."""
    out = flat((240, 240, 240))
    for i, line in enumerate(("THE LAST", "SUMMER", "coming soon")):
        cv2.putText(out, line, (20, 80 + 80 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (20, 20, 20), 3)
    return out


def huge_png(path: Path, side: int = 20_000) -> Path:
    """A real ``side`` x ``side`` PNG (1-bit grey, all black: 50 MB of pixels compressed to ~50 kB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def bad_files(directory: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of bad file, with the words of the error it must give: a truncated JPEG, a text file
    named .png, a 20,000 x 20,000 PNG and an empty file."""
    jpeg = write(directory / "whole.jpg", sample("coffee")).read_bytes()
    truncated = directory / "truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    text = directory / "notes.png"
    text.write_text("not an image, only words\n")
    empty = directory / "empty.webp"
    empty.write_bytes(b"")
    return {
        "truncated": (truncated, r"truncated\.jpg: a corrupt or truncated JPEG image"),
        "text": (text, r"notes\.png: not a PNG, JPEG or WebP image"),
        "huge": (huge_png(directory / "huge.png"), r"huge\.png: 20,000 x 20,000 pixels .* before decoding"),
        "empty": (empty, r"empty\.webp: the file is empty"),
    }
