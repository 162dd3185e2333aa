"""Safetensors files without copies: deterministic streaming writes and zero-copy memory-mapped reads.

The `safetensors` package's own numpy API (`load_file`, `safe_open(...).get_tensor`) copies every tensor into a new
array. Embedding shards can be many GiB, so the reader here parses the documented file layout itself and builds
read-only numpy views straight over an `mmap` of the file:

    8 bytes   little-endian uint64 N = length of the JSON header
    N bytes   JSON: {"__metadata__": {str: str}, "<tensor>": {"dtype", "shape", "data_offsets": [begin, end]}, ...}
    rest      the tensor bytes; `data_offsets` are relative to the first byte after the header
"""
from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import InputError
from shared.files import fsync_dir

# safetensors dtype codes that numpy can view without conversion (BF16 has no numpy dtype and is never written here).
DTYPES: dict[str, np.dtype] = {
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"), "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the same sanity bound the reference implementation applies


class HeaderError(InputError):
    """The file is not a readable safetensors file (truncated, corrupted header, inconsistent offsets)."""


def write_safetensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write a standard safetensors file, byte-for-byte deterministic, streaming each tensor without a copy.

    `safetensors.numpy.save_file` orders `__metadata__` by a hash map (so identical inputs give different bytes and
    sha256 from run to run) and copies every tensor into one buffer first. Here keys are sorted and tensors are
    laid out by descending item size, then name, so every tensor stays aligned to its item size.
    The file is fsynced before returning.
    """
    codes = {dtype: code for code, dtype in DTYPES.items()}
    arrays = {name: np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")) for name, a in tensors.items()}
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    offset = 0
    for name in sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k)):
        array = arrays[name]
        if array.dtype not in codes:
            raise ValueError(f"tensor {name!r}: dtype {array.dtype} has no safetensors code")
        header[name] = {"dtype": codes[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name in list(header)[1 if metadata else 0:]:
            if arrays[name].size:  # empty shards (more shards than rows) have zero-size tensors
                f.write(arrays[name].reshape(-1).view(np.uint8).data)
        f.flush()
        os.fsync(f.fileno())


def read_header(path: str | Path) -> tuple[dict[str, Any], int, int]:
    """Parse and sanity-check the header of a safetensors file.

    Returns:
        (header dict including "__metadata__" (possibly {}), offset of the data section, file size in bytes).
    Raises:
        HeaderError: the file is shorter than its header claims, the JSON is broken, or offsets do not fit.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderError(f"file is only {size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise HeaderError(f"header claims {n} bytes but the file has {size} bytes (truncated or corrupted)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeaderError(f"header is not valid JSON ({e}); the file is corrupted") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object; the file is corrupted")
    data_start, data_len = 8 + n, size - 8 - n
    metadata = header.setdefault("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise HeaderError("__metadata__ is not a mapping of strings; the file is corrupted")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = DTYPES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise HeaderError(f"tensor {name!r} has a malformed or unsupported header entry {info!r}") from None
        if not 0 <= begin <= end <= data_len:
            raise HeaderError(f"tensor {name!r} ends at byte {end} but the data section has {data_len} bytes "
                              "(truncated file)")
        if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise HeaderError(f"tensor {name!r}: {end - begin} bytes do not hold shape {shape} of {info['dtype']}")
    return header, data_start, size


def map_tensors(path: str | Path, header: dict[str, Any], data_start: int) -> dict[str, np.ndarray]:
    """Read-only numpy views of every tensor, backed by one shared mmap of the file (no bytes are copied).

    Each array's `.base` is a memoryview whose `.obj` is the `mmap.mmap`; pages are read lazily by the OS.
    """
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after the file is closed
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = DTYPES[info["dtype"]], tuple(int(d) for d in info["shape"])
        begin = data_start + int(info["data_offsets"][0])
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(mapped, dtype=dtype, count=count, offset=begin) if count else np.empty(0, dtype)
        array = array.reshape(shape)
        array.flags.writeable = False
        tensors[name] = array
    return tensors
