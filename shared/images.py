"""Find the image file of every VisDial / demo image id under a folder, in one recursive pass.

VisDial names images after their source: COCO train2014/val2014 for the train split, VisualDialog_val2018/test2018
for val/test, and the bundled demo writes `<image_id>.png`. The index maps each id to its file so the extractor
can ask for an id and get either the path or an error that says what was searched and how to get the images.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from shared.errors import InputError

# (pattern shown in errors, regex on the file name whose group 1 is the image id)
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("<image_id>.png|.jpg|.jpeg", re.compile(r"(\d+)\.(?:png|jpe?g)", re.IGNORECASE)),
    ("COCO_train2014_<12 digits>.jpg", re.compile(r"COCO_train2014_(\d{12})\.jpg")),
    ("COCO_val2014_<12 digits>.jpg", re.compile(r"COCO_val2014_(\d{12})\.jpg")),
    ("VisualDialog_val2018_<12 digits>.jpg", re.compile(r"VisualDialog_val2018_(\d{12})\.jpg")),
    ("VisualDialog_test2018_<12 digits>.jpg", re.compile(r"VisualDialog_test2018_(\d{12})\.jpg")),
)
FETCH_HINT = "run `make data-demo` (demo images) or `make data-visdial` (COCO + VisualDialog images)"


class ImageIndexError(InputError):
    """An image folder that cannot serve the requested ids (missing folder, duplicate ids)."""


class MissingImageError(ImageIndexError, LookupError):
    """No file in the scanned folder carries the requested image id."""


def image_id_of(file_name: str) -> int | None:
    """The image id encoded in a file name, or None when the name fits none of PATTERNS."""
    for _shown, regex in PATTERNS:
        match = regex.fullmatch(file_name)
        if match:
            return int(match.group(1))
    return None


class ImageIndex:
    """Image id -> file, built by `ImageIndex.scan(root)`."""

    def __init__(self, root: Path, paths: dict[int, Path]):
        self.root = root
        self._paths = paths

    @classmethod
    def scan(cls, root: str | Path) -> ImageIndex:
        """Walk `root` once (following linked folders, each real folder once) and index every image file.

        Raises:
            ImageIndexError: `root` is not a folder, or two files carry the same image id.
        """
        root = Path(root)
        if not root.is_dir():
            raise ImageIndexError(f"image folder {root} does not exist; {FETCH_HINT}, or point the config at it")
        paths: dict[int, Path] = {}
        visited: set[tuple[int, int]] = set()  # (device, inode) of each walked folder: a link loop ends here
        for folder, subfolders, files in os.walk(root, followlinks=True):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in visited:
                subfolders.clear()
                continue
            visited.add((st.st_dev, st.st_ino))
            subfolders.sort()  # a deterministic walk, so the duplicate error always names the same pair
            for name in sorted(files):
                image_id = image_id_of(name)
                if image_id is None:
                    continue
                path = Path(folder, name)
                if image_id in paths:
                    raise ImageIndexError(
                        f"image id {image_id} is carried by two files under {root}: {paths[image_id]} and {path}; "
                        "keep one of them, or scan the folder of a single split")
                paths[image_id] = path
        return cls(root, paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._paths

    def ids(self) -> list[int]:
        return sorted(self._paths)

    def path(self, image_id: int) -> Path:
        """The file of `image_id`; raises MissingImageError naming the id, the folder, the patterns and the fix."""
        try:
            return self._paths[image_id]
        except KeyError:
            tried = ", ".join(shown for shown, _regex in PATTERNS)
            raise MissingImageError(
                f"no image file for image id {image_id} under {self.root} ({len(self._paths)} images indexed; "
                f"names tried: {tried}); {FETCH_HINT}") from None

    def missing(self, image_ids: list[int]) -> list[int]:
        """The ids of `image_ids` without a file, so a job can report them all before it starts."""
        return [i for i in image_ids if i not in self._paths]
