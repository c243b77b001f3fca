import numpy as np
import pytest
from PIL import Image

from edgetl.errors import DataError
from edgetl.runtime.image import load_image, load_images, to_rgb


def test_modes_become_rgb(tmp_path):
    grey = Image.fromarray(np.full((4, 6), 100, np.uint8), mode="L")
    palette = grey.convert("P")
    cmyk = Image.new("CMYK", (6, 4), (0, 0, 0, 0))
    for image in (grey, palette, cmyk, Image.new("RGB", (6, 4))):
        rgb = to_rgb(image)
        assert rgb.mode == "RGB" and rgb.size == (6, 4)
    assert np.asarray(to_rgb(grey))[0, 0].tolist() == [100, 100, 100]
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_scales_instead_of_clipping(tmp_path):
    deep = Image.fromarray(np.full((3, 3), 65535 // 2, np.uint16))
    assert deep.mode.startswith("I;16")
    value = np.asarray(to_rgb(deep))[0, 0, 0]
    assert 125 <= value <= 130


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    # A 4x2 (wide) picture stored with orientation 6 (rotate 90° clockwise) is shown 2x4 (tall).
    image = Image.new("RGB", (4, 2), (200, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    pixels = load_image(path, (8, 4))
    assert pixels.shape == (8, 4, 3)
    with Image.open(path) as opened:
        assert to_rgb(opened).size == (2, 4)


def test_resize_is_to_height_width_without_crop(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (40, 10), (0, 255, 0)).save(path)
    pixels = load_image(path, (16, 12))
    assert pixels.shape == (16, 12, 3) and pixels.dtype == np.uint8
    assert pixels[8, 6].tolist() == [0, 255, 0]


def test_bad_files_name_the_file(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="broken.jpg"):
        load_image(broken, (8, 8))
    with pytest.raises(DataError, match="no such image"):
        load_image(tmp_path / "missing.png", (8, 8))


def test_load_images_skips_bad_files(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (5, 5), (1, 2, 3)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    pixels, kept, errors = load_images([good, bad, good], (5, 5))
    assert pixels.shape == (2, 5, 5, 3)
    assert kept == [0, 2]
    assert len(errors) == 1 and "bad.png" in str(errors[0])
