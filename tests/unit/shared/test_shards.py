"""Embedding shards: round trip, atomic writes, every corruption caught with the shard's name, zero-copy reads."""
import json
import mmap
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from shared.shards import _format as shard_format
from shared.shards import (ShardError, ShardSet, build_index, clean_stale, is_complete, marker_path,
                           missing_shards, sha256_file, shard_name, shard_range, write_shard)

ROUNDS, IMG, TXT = 3, 6, 4


def make_tensors(ids, dtype=np.float16, optional=(), img=IMG, txt=TXT, seed=0):
    rng = np.random.default_rng(seed + int(ids[0]) if len(ids) else seed)
    rows = len(ids)
    t = {"image_ids": np.asarray(ids, np.int64), "num_rounds": rng.integers(1, ROUNDS + 1, rows).astype(np.int64),
         "image": rng.standard_normal((rows, img)).astype(dtype),
         "question": rng.standard_normal((rows, ROUNDS, txt)).astype(dtype)}
    shapes = {"answer": (rows, ROUNDS, txt), "caption": (rows, txt), "round_image": (rows, ROUNDS, img)}
    t.update({name: rng.standard_normal(shapes[name]).astype(dtype) for name in optional})
    return t


def make_meta(i, n, dtype="float16", encoder="enc_a", img=IMG, txt=TXT, split="val"):
    return {"encoder_id": encoder, "checkpoint_sha256": "c0ffee", "image_dim": img, "text_dim": txt, "dtype": dtype,
            "preprocessing": {"resize": 224}, "code_version": "test", "split": split, "shard_index": i,
            "num_shards": n}


def write_all(directory, total=7, n=3, index=True, dtype=np.float16, optional=()):
    ids = np.arange(1000, 1000 + total, dtype=np.int64) * 3  # not row numbers, so row_of is really a lookup
    parts = []
    for i in range(n):
        a, b = shard_range(total, i, n)
        parts.append(make_tensors(ids[a:b], dtype, optional))
        write_shard(Path(directory) / shard_name(i, n), parts[-1], make_meta(i, n, np.dtype(dtype).name))
    if index:
        build_index(directory)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def flip_byte(path, offset):
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def test_names_and_ranges_cover_every_row_once():
    assert shard_name(3, 8) == "shard-00003-of-00008.safetensors"
    for total in (0, 1, 7, 100):
        for n in (1, 3, 8):
            ranges = [shard_range(total, i, n) for i in range(n)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1
    for bad in ((3, 3), (-1, 2), (0, 0)):
        with pytest.raises(ShardError, match="shard_index"):
            shard_name(*bad)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("optional", [(), ("answer", "caption", "round_image")])
def test_round_trip(tmp_path, dtype, optional):
    expected = write_all(tmp_path, dtype=dtype, optional=optional)
    shards = ShardSet(tmp_path, encoder_id="enc_a", dims={"image": IMG, "text": TXT, "rounds": ROUNDS}, verify=True)
    assert len(shards) == 7 and shards.dims == {"image": IMG, "text": TXT, "rounds": ROUNDS}
    assert set(shards.tensor_names) == {"image_ids", "num_rounds", "image", "question", *optional}
    assert ("round_image" in shards.tensor_names) == ("round_image" in optional)
    assert shards.metadata["encoder_id"] == "enc_a" and json.loads(shards.metadata["preprocessing"]) == {"resize": 224}
    np.testing.assert_array_equal(shards.image_ids, expected["image_ids"])
    rows = np.array([6, 0, 3, 3, 5])
    for name in shards.tensor_names:
        got = shards.get(name, rows)
        assert got.dtype == expected[name].dtype
        np.testing.assert_array_equal(got, expected[name][rows])
    assert shards.get("image", 4).shape == (IMG,)
    assert shards.row_of(int(expected["image_ids"][5])) == 5
    np.testing.assert_array_equal(shards.rows_of(expected["image_ids"][::-1]), np.arange(7)[::-1])
    spans = [(v.start, v.stop, len(v.tensors["image_ids"])) for v in shards.iter_shards()]
    assert spans == [(0, 2, 2), (2, 4, 2), (4, 7, 3)]


def test_safetensors_library_reads_our_files(tmp_path):
    expected = write_all(tmp_path, total=3, n=1, index=False, optional=("caption",))
    path = tmp_path / shard_name(0, 1)
    loaded = load_file(path)
    assert sorted(loaded) == sorted(expected)
    for name, array in expected.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)
    with safe_open(path, framework="numpy") as f:
        assert f.metadata()["format"] == "vdmem-shard/1" and f.metadata()["rows"] == "3"


def test_more_shards_than_rows_gives_empty_shards(tmp_path):
    expected = write_all(tmp_path, total=2, n=3)
    shards = ShardSet(tmp_path)
    assert [v.stop - v.start for v in shards.iter_shards()] == [0, 1, 1]
    np.testing.assert_array_equal(shards.get("image", [1, 0]), expected["image"][[1, 0]])


def test_lookup_errors_are_clear(tmp_path):
    write_all(tmp_path)
    shards = ShardSet(tmp_path)
    with pytest.raises(ShardError, match="image id 5 has no embedding"):
        shards.row_of(5)
    with pytest.raises(ShardError, match="no tensor 'answer'"):
        shards.get("answer", [0])
    with pytest.raises(ShardError, match="out of range"):
        shards.get("image", [7])


@pytest.mark.parametrize("change, message", [
    (lambda t, m: t.update(image_ids=np.array([1, 1], np.int64)), "not unique"),
    (lambda t, m: t.update(image_ids=t["image_ids"].astype(np.int32)), "int64"),
    (lambda t, m: t.update(image=t["image"][:1]), "image has shape"),
    (lambda t, m: t.update(image=t["image"].astype(np.float64)), "dtype"),
    (lambda t, m: t.update(question=t["question"].astype(np.float32)), "dtype"),
    (lambda t, m: t["image"].__setitem__((0, 0), np.nan), "NaN"),
    (lambda t, m: t.update(num_rounds=np.array([0, 1], np.int64)), "num_rounds"),
    (lambda t, m: t.pop("question"), "missing tensors"),
    (lambda t, m: m.pop("checkpoint_sha256"), "metadata lacks"),
    (lambda t, m: m.update(text_dim=5), "text_dim"),
    (lambda t, m: m.update(shard_index=1, num_shards=2), "file name"),
    (lambda t, m: m.update(shard_index=1), "shard_index=1 num_shards=1"),
    (lambda t, m: m.update(preprocessing="{not json"), "preprocessing"),
])
def test_write_rejects_bad_input(tmp_path, change, message):
    tensors, meta = make_tensors([10, 11]), make_meta(0, 1)
    change(tensors, meta)
    path = tmp_path / shard_name(0, 1)
    with pytest.raises(ShardError, match=message) as err:
        write_shard(path, tensors, meta)
    assert str(path) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_writes_are_incomplete_and_cleaned(tmp_path, monkeypatch):
    write_all(tmp_path, index=False)
    shard1, shard2 = tmp_path / shard_name(1, 3), tmp_path / shard_name(2, 3)
    marker_path(shard1).unlink()  # killed between the rename and the marker
    leftover = tmp_path / f"{shard_name(0, 3)}.tmp-4242"  # killed during the write of shard 0
    leftover.write_bytes(b"partial")
    foreign = tmp_path / "config.yaml.tmp-4242"  # another writer's temp file is none of clean_stale's business
    foreign.write_text("x")

    def dies_midway(filename, tensors, metadata):  # a crash while shard 2 is being written again
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt
    monkeypatch.setattr(shard_format, "write_safetensors", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        write_shard(shard2, make_tensors([1, 2, 3]), make_meta(2, 3))
    assert not is_complete(shard1) and not is_complete(shard2)  # the old marker went before the rewrite started
    assert missing_shards(tmp_path, 3) == [1, 2]
    with pytest.raises(ShardError, match=r"2 of 3 shards are missing or incomplete \(shard-00001-of-00003"):
        build_index(tmp_path)
    other_tmp = [p for p in tmp_path.iterdir() if ".tmp-" in p.name and p not in (leftover, foreign)]
    assert len(other_tmp) == 1  # the half-written rewrite of shard 2
    assert clean_stale(tmp_path, only=shard_name(0, 3)) == [leftover]  # one job never touches another's files
    assert all(p.exists() for p in other_tmp + [shard1, shard2])
    removed = {p.name for p in clean_stale(tmp_path)}
    assert removed == {shard1.name, shard2.name, *(p.name for p in other_tmp)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [foreign.name, shard_name(0, 3),
                                                          shard_name(0, 3) + ".done.json"]
    (tmp_path / shard_name(0, 3)).write_bytes(b"rewritten by hand")  # the marker no longer describes it
    assert clean_stale(tmp_path) == [tmp_path / shard_name(0, 3), marker_path(tmp_path / shard_name(0, 3))]


def test_missing_index_names_missing_shards_or_the_fix(tmp_path):
    with pytest.raises(ShardError, match="does not exist"):
        ShardSet(tmp_path / "nowhere")
    with pytest.raises(ShardError, match="no shard-"):
        ShardSet(tmp_path)
    write_all(tmp_path, index=False)
    with pytest.raises(ShardError, match=r"index.json: missing; build it with `python -m services.extract finalize"):
        ShardSet(tmp_path)
    (tmp_path / shard_name(1, 3)).unlink()
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.*split=val shard_index=<i> num_shards=3"):
        ShardSet(tmp_path)


def test_missing_shard(tmp_path):
    write_all(tmp_path)
    (tmp_path / shard_name(2, 3)).unlink()
    with pytest.raises(ShardError, match=r"shard-00002-of-00003.safetensors: missing; .*shard_index=2 num_shards=3"):
        ShardSet(tmp_path)


def test_truncated_shard(tmp_path):
    write_all(tmp_path)
    path = tmp_path / shard_name(1, 3)
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.safetensors: \d+ bytes but the index says"):
        ShardSet(tmp_path)
    assert not is_complete(path)
    marker = json.loads(marker_path(path).read_text())  # even if the marker is made to agree, the header does not
    marker_path(path).write_text(json.dumps({**marker, "bytes": path.stat().st_size}))
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.safetensors: .*truncated file.*shard_index=1"):
        build_index(tmp_path)


def test_flipped_data_byte_is_caught_by_default(tmp_path):
    write_all(tmp_path)
    path = tmp_path / shard_name(0, 3)
    flip_byte(path, path.stat().st_size - 1)
    ShardSet(tmp_path, verify="never")  # headers, sizes, rows and dims still agree: only the checksum can tell
    with pytest.raises(ShardError, match=r"shard-00000-of-00003.safetensors: sha256 .* does not match"):
        ShardSet(tmp_path)  # a reader hashes every shard the first time by default
    with pytest.raises(ShardError, match=r"sha256 .* does not match"):
        ShardSet(tmp_path, verify=True)


def test_a_verified_shard_is_hashed_once_until_it_changes(tmp_path):
    write_all(tmp_path)
    path = tmp_path / shard_name(0, 3)
    ShardSet(tmp_path)
    record = Path(str(path) + ".verified.json")
    assert record.is_file() and json.loads(record.read_text())["bytes"] == path.stat().st_size
    stamp = record.stat().st_mtime_ns
    ShardSet(tmp_path)  # unchanged: the recorded hash is trusted, nothing is rewritten
    assert record.stat().st_mtime_ns == stamp
    flip_byte(path, path.stat().st_size - 1)  # rewriting the shard changes its mtime: hashed again, caught
    with pytest.raises(ShardError, match=r"sha256 .* does not match"):
        ShardSet(tmp_path)


@pytest.mark.parametrize("offset", [0, 3, 8, 20])
def test_flipped_header_byte_is_caught_without_verify(tmp_path, offset):
    write_all(tmp_path)
    flip_byte(tmp_path / shard_name(1, 3), offset)
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.safetensors: .*shard_index=1"):
        ShardSet(tmp_path)


def test_dims_mismatch(tmp_path):
    write_all(tmp_path)
    with pytest.raises(ShardError, match=r"shard-00000-of-00003.safetensors: dims are .* but \{'image': 1024\}"):
        ShardSet(tmp_path, dims={"image": 1024})
    path = tmp_path / shard_name(1, 3)  # one shard re-extracted with another text encoder
    write_shard(path, make_tensors([3003, 3004], txt=5), {**make_meta(1, 3), "text_dim": 5})
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.safetensors: header says text_dim='5' but '4'"):
        build_index(tmp_path)
    index = json.loads((tmp_path / "index.json").read_text())  # the old index, now stale
    index["shards"][1]["bytes"] = path.stat().st_size
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.safetensors: header says text_dim='5'"):
        ShardSet(tmp_path)


def test_shard_from_another_encoder(tmp_path):
    write_all(tmp_path)
    with pytest.raises(ShardError, match=r"shard-00000-of-00003.safetensors: written by encoder 'enc_a'"):
        ShardSet(tmp_path, encoder_id="imagebind_huge")
    path = tmp_path / shard_name(2, 3)
    write_shard(path, make_tensors([3006, 3009, 3012]), make_meta(2, 3, encoder="enc_b"))
    with pytest.raises(ShardError, match=r"shard-00002-of-00003.safetensors: header says encoder_id='enc_b'"):
        build_index(tmp_path)


def test_rows_mismatch_with_marker_or_row_split(tmp_path):
    write_all(tmp_path, index=False)
    path = tmp_path / shard_name(1, 3)
    marker = json.loads(marker_path(path).read_text())
    marker_path(path).write_text(json.dumps({**marker, "rows": 5}))
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.safetensors: header says rows='2' but '5'"):
        build_index(tmp_path)
    other = tmp_path / "other"  # rows 2 + 4 where shard_range(6, i, 2) wants 3 + 3
    write_shard(other / shard_name(0, 2), make_tensors([1, 2]), make_meta(0, 2))
    write_shard(other / shard_name(1, 2), make_tensors([3, 4, 5, 6]), make_meta(1, 2))
    with pytest.raises(ShardError, match=r"shard-00000-of-00002.safetensors: holds 2 rows but shard_range"):
        build_index(other)


def test_writer_reported_drops_and_provenance(tmp_path):
    extra = {"source_rows": "7", "dataset": "val.json sha256:ab"}
    for i, ids, dropped in ((0, [1, 2], []), (1, [4], [3]), (2, [5, 6, 7], [])):  # dialog 3's image was unreadable
        meta = {**make_meta(i, 3), **extra, "dropped_image_ids": json.dumps(dropped)}
        write_shard(tmp_path / shard_name(i, 3), make_tensors(ids), meta)
    build_index(tmp_path)
    shards = ShardSet(tmp_path)
    assert len(shards) == 6 and [v.start for v in shards.iter_shards()] == [0, 2, 3]
    assert shards.row_of(4) == 2
    meta = {**make_meta(1, 3), **extra, "dropped_image_ids": "[]"}  # claims no drop but lacks a row
    write_shard(tmp_path / shard_name(1, 3), make_tensors([4]), meta)
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.safetensors: holds 1 rows but shard_range\(7, 1, 3\)"):
        build_index(tmp_path)
    meta = {**make_meta(1, 3), **extra, "dataset": "val.json sha256:cd", "dropped_image_ids": "[3]"}
    write_shard(tmp_path / shard_name(1, 3), make_tensors([4]), meta)
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.safetensors: header says dataset='val.json sha256:cd'"):
        build_index(tmp_path)


def test_mixed_shard_counts_are_refused(tmp_path):
    write_all(tmp_path, index=False)
    write_shard(tmp_path / shard_name(0, 2), make_tensors([1, 2, 3]), make_meta(0, 2))
    with pytest.raises(ShardError, match="different num_shards are mixed"):
        build_index(tmp_path)


def test_reads_are_zero_copy_memory_maps(tmp_path):
    rows, dim = 512, 8192  # an 8 MiB image tensor
    ids = np.arange(rows, dtype=np.int64)
    tensors = make_tensors(ids, img=dim)
    write_shard(tmp_path / shard_name(0, 1), tensors, make_meta(0, 1, img=dim))
    build_index(tmp_path)
    io = Path("/proc/self/io")
    read_bytes = (lambda: int(io.read_text().split("rchar:")[1].split()[0])) if io.exists() else None
    ShardSet(tmp_path)  # the first open hashes every byte once (and records it)
    before = read_bytes() if read_bytes else 0
    shards = ShardSet(tmp_path)
    view = next(shards.iter_shards()).tensors["image"]
    np.testing.assert_array_equal(shards.get("image", [rows - 1])[0], tensors["image"][-1])
    if read_bytes:  # only the headers went through read(); the rows come in as mapped pages
        assert read_bytes() - before < 1 << 20
        ShardSet(tmp_path, verify=True)
        assert read_bytes() - before > rows * dim * 2  # the probe can fail: verify really reads every byte
    base = view
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
    assert not view.flags.writeable
    assert not np.shares_memory(shards.get("image", [0]), view)  # get() gathers into a fresh array


def test_same_inputs_same_bytes_and_deterministic_index(tmp_path):
    a = write_all(tmp_path / "a", index=False)
    write_all(tmp_path / "b", index=False)
    for i in range(3):
        name = shard_name(i, 3)
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        marker = json.loads(marker_path(tmp_path / "b" / name).read_text())
        assert sha256_file(tmp_path / "a" / name) == marker["sha256"]
    first = build_index(tmp_path / "a")
    first_bytes = (tmp_path / "a" / "index.json").read_bytes()
    assert build_index(tmp_path / "a") == first and (tmp_path / "a" / "index.json").read_bytes() == first_bytes
    build_index(tmp_path / "b")
    assert (tmp_path / "b" / "index.json").read_bytes() == first_bytes
    assert first["total_rows"] == len(a["image_ids"]) and first["metadata"]["shard_index"] == "0"
    assert [s["file"] for s in first["shards"]] == [shard_name(i, 3) for i in range(3)]


def test_index_then_verified_read_and_a_flipped_byte(tmp_path):
    """What `extract finalize` and `extract verify` rely on: build_index, then a checksummed read catches one bit."""
    write_all(tmp_path, index=False)
    assert build_index(tmp_path)["total_rows"] == 7
    assert len(ShardSet(tmp_path, verify=True)) == 7
    flip_byte(tmp_path / shard_name(0, 3), (tmp_path / shard_name(0, 3)).stat().st_size - 1)
    with pytest.raises(ShardError, match="sha256"):
        ShardSet(tmp_path, verify=True)
