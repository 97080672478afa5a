"""Decoding every pixel mode to 8-bit, bad-file reasons, hashes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pattern, save
from PIL import Image

from cxr_utils.data import images


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_modes_decode_to_the_same_gray_pixels(tmp_path, mode):
    gray = pattern(7)
    path = save(tmp_path / f"x-{mode.replace(';', '')}.png", gray, mode=mode)
    out = images.load_gray8(path)
    assert out.dtype == np.uint8 and out.shape == gray.shape
    assert np.array_equal(out, gray)


def test_palette_image_decodes_close_to_source(tmp_path):
    gray = pattern(8)
    out = images.load_gray8(save(tmp_path / "p.png", gray, mode="P"))
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - gray).max() <= 2


def test_sixteen_bit_full_range_maps_to_full_8_bit_range():
    ramp = Image.fromarray(np.array([[0, 257 * 128, 65535]], dtype=np.uint16))
    assert ramp.mode.startswith("I;16")
    assert images.to_gray8(ramp).tolist() == [[0, 128, 255]]


def test_transparent_pixels_become_black():
    rgba = Image.new("RGBA", (2, 1), (255, 255, 255, 255))
    rgba.putpixel((1, 0), (255, 255, 255, 0))
    assert images.to_gray8(rgba).tolist() == [[255, 0]]


def test_float_and_one_bit_modes():
    flt = Image.fromarray(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32))
    assert images.to_gray8(flt).tolist() == [[0, 128, 255]]
    one = Image.new("1", (2, 1))
    one.putpixel((0, 0), 1)
    assert images.to_gray8(one).tolist() == [[255, 0]]


def test_bad_files_raise_with_a_reason(tmp_path):
    with pytest.raises(images.ImageReadError) as err:
        images.open_checked(tmp_path / "absent.png")
    assert err.value.reason == "missing_file" and "absent.png" in str(err.value)

    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(images.ImageReadError) as err:
        images.open_checked(tmp_path / "empty.png")
    assert err.value.reason == "unreadable"

    (tmp_path / "junk.jpg").write_bytes(b"not an image at all" * 4)
    with pytest.raises(images.ImageReadError) as err:
        images.open_checked(tmp_path / "junk.jpg")
    assert err.value.reason == "unreadable"

    full = save(tmp_path / "full.jpg", pattern(9, 256), quality=95)
    (tmp_path / "cut.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(images.ImageReadError) as err:
        images.open_checked(tmp_path / "cut.jpg")
    assert err.value.reason == "truncated"


def test_pixel_hash_ignores_encoding_and_file_hash_does_not(tmp_path):
    gray = pattern(10)
    png = images.inspect_image(save(tmp_path / "a.png", gray))
    bmp = images.inspect_image(save(tmp_path / "a.bmp", gray))
    assert png.pixel_sha256 == bmp.pixel_sha256
    assert png.sha256 != bmp.sha256
    other = images.inspect_image(save(tmp_path / "b.png", pattern(11)))
    assert other.pixel_sha256 != png.pixel_sha256


def test_inspect_records_size_and_original_mode(tmp_path):
    info = images.inspect_image(save(tmp_path / "a.png", pattern(3, 40), mode="RGBA"))
    assert (info.width, info.height, info.mode) == (40, 40, "RGBA")
    assert len(info.phash) == 16 and len(info.dhash) == 16


def test_hamming_matrix_counts_differing_bits():
    d = images.hamming_matrix(["0000000000000000", "000000000000000f", "ffffffffffffffff"])
    assert d.tolist() == [[0, 4, 64], [4, 0, 60], [64, 60, 0]]


def test_resized_copy_is_a_near_duplicate_and_another_image_is_not(tmp_path):
    base = pattern(21, 300)
    copy = np.asarray(Image.fromarray(base).resize((224, 224), Image.LANCZOS))
    a = images.inspect_image(save(tmp_path / "a.jpg", base, quality=90))
    b = images.inspect_image(save(tmp_path / "b.png", copy))
    c = images.inspect_image(save(tmp_path / "c.png", pattern(22, 224)))

    def dist(x, y):
        return int(
            images.hamming_matrix([x.phash], [y.phash])[0, 0] + images.hamming_matrix([x.dhash], [y.dhash])[0, 0]
        )

    assert dist(a, b) <= images.NEAR_DUPLICATE_THRESHOLD
    assert dist(a, c) > images.NEAR_DUPLICATE_THRESHOLD
