"""Every common image mode decodes to RGB; missing, empty, truncated and non-image files fail with a reason."""
import numpy as np
import pytest
from PIL import Image

from services.extract.dataset import ImageDataset, ImageDecodeError, ImageItem, collate, load_rgb


def _rgb_source(size=(20, 16)):
    x = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    return Image.fromarray(x, "RGB")


@pytest.mark.parametrize(
    "name, make",
    [
        ("gray.png", lambda im: im.convert("L")),
        ("gray_alpha.png", lambda im: im.convert("LA")),
        ("rgba.png", lambda im: im.convert("RGBA")),
        ("palette.png", lambda im: im.convert("P")),
        ("cmyk.jpg", lambda im: im.convert("CMYK")),
        ("gray.jpg", lambda im: im.convert("L")),
        ("rgb.jpg", lambda im: im),
        ("one_bit.png", lambda im: im.convert("1")),
        ("sixteen_bit.png", lambda im: Image.fromarray((np.asarray(im.convert("L"), np.uint16) * 257))),
    ],
)
def test_modes_convert_to_rgb(tmp_path, name, make):
    path = tmp_path / name
    make(_rgb_source()).save(path)
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (20, 16)
    assert np.asarray(image).std() > 0  # real content, not a blank frame


def test_palette_with_transparency_converts(tmp_path):
    image = _rgb_source().convert("P")
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    assert load_rgb(tmp_path / "p.png").mode == "RGB"


def test_sixteen_bit_keeps_its_range(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0..63000: Pillow's own convert would clip
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    out = np.asarray(load_rgb(tmp_path / "deep.png"))[..., 0]
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) == 64


def _write(path, data):
    path.write_bytes(data)
    return path


def _truncated(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    _rgb_source((64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "setup, reason",
    [
        (lambda t: t / "absent.png", "file not found"),
        (lambda t: _write(t / "empty.png", b""), "empty file"),
        (lambda t: _write(t / "text.png", b"not an image at all"), "not an image"),
        (lambda t: _truncated(t, ".png"), "truncated"),
        (lambda t: _truncated(t, ".jpg"), "truncated"),
    ],
    ids=["missing", "zero-byte", "non-image", "truncated-png", "truncated-jpeg"],
)
def test_bad_files_fail_with_a_reason(tmp_path, setup, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        load_rgb(setup(tmp_path))


def test_dataset_reports_failures_instead_of_raising(tmp_path):
    _rgb_source().save(tmp_path / "1.png")
    (tmp_path / "2.png").write_bytes(b"")
    items = [ImageItem(1, tmp_path / "1.png"), ImageItem(2, tmp_path / "2.png"), ImageItem(3, None)]
    dataset = ImageDataset(items, lambda im: np.asarray(im, np.float32).mean(axis=(0, 1)))
    import torch

    batch = collate([(i, None if x is None else torch.as_tensor(x), r) for i, x, r in (dataset[k] for k in range(3))])
    assert batch.indices == [0] and batch.pixels.shape == (1, 3)
    assert [i for i, _ in batch.failed] == [1, 2]
    assert "empty" in batch.failed[0][1] and "no file" in batch.failed[1][1]
