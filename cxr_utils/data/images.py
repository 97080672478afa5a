"""Decode any pixel mode to 8-bit, check files, and hash images (exact and perceptual).

Radiographs arrive as L, RGB, RGBA, P, LA, 1-bit and 16-bit files. Everything downstream sees
8-bit grayscale (H, W) arrays from :func:`load_gray8`; a 3-channel copy is a view of it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

# Perceptual duplicate rule: pHash and dHash (64 bits each) Hamming distances added up.
# Calibrated on the mirror: Cohen/Figure1 images re-encoded into the Radiography COVID folder
# sit at 0-6, while the closest pair that cannot be a copy (Radiography COVID vs Normal) is 7.
NEAR_DUPLICATE_THRESHOLD = 6


class ImageReadError(Exception):
    """An image that cannot be used; ``reason`` is one of missing_file, unreadable, truncated, too_large."""

    def __init__(self, path: Path, reason: str, detail: str):
        super().__init__(f"{path}: {reason} ({detail})")
        self.path, self.reason, self.detail = path, reason, detail


@dataclass(frozen=True)
class ImageInfo:
    """What the manifest records about one decoded image."""

    width: int
    height: int
    mode: str
    sha256: str  # of the file's bytes: the cache key
    pixel_sha256: str  # of the decoded 8-bit grayscale pixels: exact-duplicate key
    phash: str
    dhash: str


def open_checked(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image, raising :class:`ImageReadError` with a reason (one of
    missing_file, unreadable, truncated, too_large: more than ``max_pixels`` pixels)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "missing_file", "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "unreadable", "empty file")
    try:
        img = Image.open(path)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageReadError(path, "too_large", f"{img.width}x{img.height} pixels, more than {max_pixels:,}")
        img.load()
    except Image.DecompressionBombError as err:
        raise ImageReadError(path, "too_large", str(err)) from err
    except UnidentifiedImageError as err:
        raise ImageReadError(path, "unreadable", f"not a recognised image: {err}") from err
    except (OSError, SyntaxError, ValueError) as err:
        reason = "truncated" if "truncated" in str(err).lower() else "unreadable"
        raise ImageReadError(path, reason, str(err)) from err
    return img


def to_gray8(img: Image.Image) -> np.ndarray:
    """Any PIL image as an 8-bit grayscale (H, W) array.

    16-bit and 32-bit integer images are scaled linearly from their type's full range
    (0-65535) unless all values already fit in 0-255; float images are min-max scaled.
    Transparency is composited over black (the background of a radiograph).
    """
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        scale = 1.0 if arr.max(initial=0) <= 255 else 255.0 / 65535.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        low, high = float(arr.min()), float(arr.max())
        arr = (arr - low) / (high - low) * 255.0 if high > low else np.zeros_like(arr)
        return np.rint(arr).astype(np.uint8)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return np.asarray(img.convert("L"), dtype=np.uint8)


def load_gray8(path: str | Path) -> np.ndarray:
    """Decode a file to an 8-bit grayscale array (raises :class:`ImageReadError`)."""
    return to_gray8(open_checked(path))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pixel_sha256(gray: np.ndarray) -> str:
    """sha256 of decoded pixels and their shape (same picture, any encoding -> same hash)."""
    digest = hashlib.sha256(f"{gray.shape}".encode())
    digest.update(np.ascontiguousarray(gray).tobytes())
    return digest.hexdigest()


def inspect_image(path: str | Path) -> ImageInfo:
    """Decode one image and measure it (raises :class:`ImageReadError`)."""
    img = open_checked(path)
    gray = to_gray8(img)
    small = Image.fromarray(gray)
    return ImageInfo(
        width=img.width,
        height=img.height,
        mode=img.mode,
        sha256=file_sha256(path),
        pixel_sha256=pixel_sha256(gray),
        phash=str(imagehash.phash(small)),
        dhash=str(imagehash.dhash(small)),
    )


def hamming_matrix(hex_hashes: list[str], other: list[str] | None = None) -> np.ndarray:
    """Pairwise Hamming distances between 64-bit hashes written in hex."""
    a = np.array([int(h, 16) for h in hex_hashes], dtype=np.uint64)
    b = a if other is None else np.array([int(h, 16) for h in other], dtype=np.uint64)
    return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.int16)


# --------------------------------------------------------------------------- resized cache


def resize_gray8(gray: np.ndarray, size: int) -> np.ndarray:
    """Square resize (the study's squash, no crop), bilinear with antialiasing."""
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def cache_path(cache_root: Path, sha256: str, size: int) -> Path:
    """Where the ``size`` px array of the file with this hash is kept."""
    return Path(cache_root) / f"{size}px" / sha256[:2] / f"{sha256}.npy"


def load_resized(path: str | Path, sha256: str, size: int, cache_root: Path) -> np.ndarray:
    """The image decoded to 8-bit gray and resized, from the cache when there.

    The cache is keyed by the file's sha256 and the size, so a changed file is decoded again
    and every run (any notebook) shares the same arrays. Raises :class:`ImageReadError`.
    """
    target = cache_path(cache_root, sha256, size)
    if target.is_file():
        return np.load(target)
    array = resize_gray8(load_gray8(path), size)
    save_array(target, array)
    return array


def save_array(target: Path, array: np.ndarray) -> None:
    """Save a cache array atomically: written beside the target, then renamed onto it. A failed
    write (a full disk) leaves no half-written array, neither the target nor the temporary file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp.npy")
    try:
        np.save(tmp, array)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
