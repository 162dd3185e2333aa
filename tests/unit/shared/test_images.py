"""shared.images: one recursive scan maps image ids to files named the VisDial / COCO / demo way."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.images import ImageIndex, ImageIndexError, MissingImageError, image_id_of


def _touch(root: Path, rel: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded by the index")
    return path


@pytest.mark.parametrize(("name", "image_id"), [
    ("42.png", 42), ("0042.jpg", 42), ("7.JPEG", 7),
    ("COCO_train2014_000000581929.jpg", 581929), ("COCO_val2014_000000000042.jpg", 42),
    ("VisualDialog_val2018_000000185565.jpg", 185565), ("VisualDialog_test2018_000000568676.jpg", 568676),
    ("COCO_train2014_123.jpg", None),  # VisDial's names always carry 12 digits
    ("COCO_test2015_000000000001.jpg", None), ("42.gif", None), ("readme.txt", None), ("a42.png", None),
])
def test_file_name_patterns(name: str, image_id: int | None) -> None:
    assert image_id_of(name) == image_id


def test_scan_is_recursive_and_ignores_other_files(tmp_path: Path) -> None:
    expected = {
        1: _touch(tmp_path, "1.png"),
        2: _touch(tmp_path, "train2014/COCO_train2014_000000000002.jpg"),
        3: _touch(tmp_path, "val2014/COCO_val2014_000000000003.jpg"),
        4: _touch(tmp_path, "a/b/c/VisualDialog_val2018_000000000004.jpg"),
        5: _touch(tmp_path, "VisualDialog_test2018/VisualDialog_test2018_000000000005.jpg"),
    }
    _touch(tmp_path, "README.md")
    _touch(tmp_path, "train2014/COCO_train2014_2.jpg")
    index = ImageIndex.scan(tmp_path)
    assert len(index) == 5 and index.ids() == [1, 2, 3, 4, 5]
    assert all(index.path(i) == p for i, p in expected.items())
    assert 3 in index and 6 not in index
    assert index.missing([1, 6, 2, 9]) == [6, 9]


def test_missing_id_names_id_folder_patterns_and_fix(tmp_path: Path) -> None:
    _touch(tmp_path, "1.png")
    with pytest.raises(MissingImageError) as info:
        ImageIndex.scan(tmp_path).path(185565)
    message = str(info.value)
    for part in ("image id 185565", str(tmp_path), "1 images indexed", "<image_id>.png|.jpg|.jpeg",
                 "COCO_train2014_<12 digits>.jpg", "VisualDialog_val2018_<12 digits>.jpg",
                 "make data-demo", "make data-visdial"):
        assert part in message
    assert isinstance(info.value, LookupError)


def test_duplicate_id_names_both_files(tmp_path: Path) -> None:
    first = _touch(tmp_path, "demo/5.png")
    second = _touch(tmp_path, "val2014/COCO_val2014_000000000005.jpg")
    with pytest.raises(ImageIndexError, match="image id 5 is carried by two files") as info:
        ImageIndex.scan(tmp_path)
    assert str(first) in str(info.value) and str(second) in str(info.value)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageIndexError, match=r"image folder .*nothere does not exist; run `make data-demo`"):
        ImageIndex.scan(tmp_path / "nothere")


def test_linked_folders_are_followed_once(tmp_path: Path) -> None:
    real = tmp_path / "store"
    image = _touch(real, "COCO_train2014_000000000011.jpg")
    root = tmp_path / "data"
    root.mkdir()
    os.symlink(real, root / "images")  # the usual "images live on another disk" layout
    os.symlink(root, root / "images" / "loop")  # a link back up must not make the walk endless
    index = ImageIndex.scan(root)
    assert index.ids() == [11] and index.path(11).resolve() == image.resolve()
