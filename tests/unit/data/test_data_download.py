"""data/download.py against a real HTTP server on 127.0.0.1 that supports Range and can cut a response mid-way."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import random
import re
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DOWNLOAD_PY = Path(__file__).resolve().parents[3] / "data" / "download.py"
spec = importlib.util.spec_from_file_location("vdmem_data_download", DOWNLOAD_PY)
download = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = download  # dataclasses look their module up while the file executes
spec.loader.exec_module(download)


class FixtureServer(ThreadingHTTPServer):
    """Serves `files` by name; logs (name, Range header); `cut[name]` = bytes to send before dropping the
    connection (once); `fail[name]` = how many 503s to answer first; `ignore_range` answers 200 to every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []
        self.cut: dict[str, int] = {}
        self.fail: dict[str, int] = {}
        self.ignore_range = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/mirror"


class _Handler(BaseHTTPRequestHandler):
    server: FixtureServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv, name = self.server, self.path.split("?")[0].rsplit("/", 1)[-1]
        srv.log.append((name, self.headers.get("Range")))
        if name not in srv.files:
            return self.send_error(404, "Not Found")
        if srv.fail.get(name):
            srv.fail[name] -= 1
            return self.send_error(503, "Service Unavailable")
        body, start = srv.files[name], 0
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if wanted and not srv.ignore_range:
            start = int(wanted.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if name in srv.cut:
            payload = payload[:srv.cut.pop(name)]
            self.close_connection = True
        self.wfile.write(payload)


@pytest.fixture()
def server():
    srv = FixtureServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:  # stored: the bytes stay incompressible
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def noise(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture()
def visdial_files(server) -> dict[str, bytes]:
    """Small stand-ins for the files of the `json`, `dense` and `val2018` groups."""
    files = {
        "visdial_1.0_train.zip": make_zip({"visdial_1.0_train.json": b'{"version": "1.0", "split": "train"}'}),
        "visdial_1.0_val.zip": make_zip({"visdial_1.0_val.json": b'{"version": "1.0", "split": "val2018"}'}),
        "visdial_1.0_test.zip": make_zip({"visdial_1.0_test.json": b'{"version": "1.0", "split": "test2018"}'}),
        "visdial_1.0_val_dense_annotations.json": b'[{"image_id": 1, "round_id": 2, "gt_relevance": [1.0]}]',
        "VisualDialog_val2018.zip": make_zip({f"VisualDialog_val2018/VisualDialog_val2018_{i:012d}.jpg": noise(3000, i)
                                              for i in range(3)}),
    }
    server.files.update(files)
    return files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_cli(out: Path, server: FixtureServer, *extra: str) -> int:
    return download.main(["--out", str(out), "--base-url", server.url, "--only", "json,dense,val2018",
                          "--retries", "0", *extra])


def test_full_download_extracts_records_checksums_and_a_rerun_skips(tmp_path, server, visdial_files, capsys):
    assert run_cli(tmp_path, server) == 0
    assert json.loads((tmp_path / "visdial_1.0_val.json").read_text())["split"] == "val2018"
    image = tmp_path / "VisualDialog_val2018" / "VisualDialog_val2018_000000000002.jpg"
    assert image.read_bytes() == noise(3000, 2)
    assert (tmp_path / "visdial_1.0_val_dense_annotations.json").read_bytes() == visdial_files[
        "visdial_1.0_val_dense_annotations.json"]
    recorded = json.loads((tmp_path / "checksums.json").read_text())
    assert {k: v["sha256"] for k, v in recorded.items()} == {k: sha256(v) for k, v in visdial_files.items()}
    assert not list(tmp_path.glob("*.part"))
    assert sorted(name for name, _ in server.log) == sorted(visdial_files)

    server.log.clear()
    capsys.readouterr()
    assert run_cli(tmp_path, server) == 0
    assert server.log == [], "a complete download must not be fetched again"
    assert capsys.readouterr().out.count("complete") == 4  # the four zips; the dense json was "verified earlier"


def test_interrupted_download_resumes_from_the_part_file(tmp_path, server):
    data = make_zip({"VisualDialog_test2018/a.jpg": noise(200_000, 1)})
    server.files["VisualDialog_test2018.zip"] = data
    item = download.Item("VisualDialog_test2018.zip", "test2018", f"{server.url}/VisualDialog_test2018.zip",
                         size=len(data), sha256=sha256(data))
    server.cut[item.name] = 70_000
    with pytest.raises(download.DownloadError, match="rerun to resume from the 70000 bytes"):
        download.fetch(item, tmp_path, retries=0)
    assert (tmp_path / f"{item.name}.part").stat().st_size == 70_000

    assert download.fetch(item, tmp_path, retries=0).startswith("downloaded, extracted 1")
    assert server.log[-1] == (item.name, "bytes=70000-")
    assert sha256((tmp_path / item.name).read_bytes()) == sha256(data)
    assert (tmp_path / "VisualDialog_test2018" / "a.jpg").read_bytes() == noise(200_000, 1)


def test_cut_connection_and_503_are_retried_within_one_run(tmp_path, server):
    data = noise(150_000, 3)
    server.files["blob.bin"] = data
    server.cut["blob.bin"], server.fail["blob.bin"] = 40_000, 1
    item = download.Item("blob.bin", "x", f"{server.url}/blob.bin", extract=False)
    assert download.fetch(item, tmp_path, retries=3, backoff=0.0) == "downloaded"
    assert [r for _, r in server.log] == [None, None, "bytes=40000-"]  # 503, cut at 40000, resumed
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_a_server_that_ignores_range_restarts_cleanly(tmp_path, server):
    data = noise(90_000, 4)
    server.files["blob.bin"], server.cut["blob.bin"], server.ignore_range = data, 30_000, True
    item = download.Item("blob.bin", "x", f"{server.url}/blob.bin", extract=False, sha256=sha256(data))
    assert download.fetch(item, tmp_path, retries=1, backoff=0.0) == "downloaded"
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_checksum_mismatch_is_an_error_naming_the_file(tmp_path, server):
    server.files["visdial_1.0_val.zip"] = make_zip({"v.json": b"{}"})
    item = download.Item("visdial_1.0_val.zip", "json", f"{server.url}/visdial_1.0_val.zip", sha256="0" * 64)
    with pytest.raises(download.DownloadError, match=r"visdial_1.0_val.zip: sha256 \w+ does not match 0{64}"):
        download.fetch(item, tmp_path, retries=0)
    assert not (tmp_path / "visdial_1.0_val.zip").exists() and not (tmp_path / "visdial_1.0_val.zip.part").exists()


def test_a_file_that_changed_after_its_checksum_was_recorded_is_rejected(tmp_path, server, visdial_files, capsys):
    assert run_cli(tmp_path, server, "--only", "dense") == 0
    name = "visdial_1.0_val_dense_annotations.json"
    (tmp_path / name).unlink()
    server.files[name] = visdial_files[name].replace(b"2", b"3")  # same size, other bytes
    assert run_cli(tmp_path, server, "--only", "dense") == 1
    err = capsys.readouterr().err
    assert name in err and "checksums.json" in err and "does not match" in err


def test_404_and_html_error_pages_are_clear_errors(tmp_path, server, capsys):
    missing = download.Item("visdial_1.0_test.zip", "json", f"{server.url}/visdial_1.0_test.zip")
    with pytest.raises(download.DownloadError, match=r"visdial_1.0_test.zip: HTTP 404 .*/mirror/visdial_1.0_test.zip"):
        download.fetch(missing, tmp_path, retries=3, backoff=0.0)
    assert len(server.log) == 1, "a 404 is not retried"
    assert download.main(["--out", str(tmp_path), "--base-url", server.url, "--only", "test2018"]) == 1
    assert "HTTP 404" in capsys.readouterr().err

    server.files["train2014.zip"] = b"<!DOCTYPE html><html>quota exceeded</html>"
    page = download.Item("train2014.zip", "train2014", f"{server.url}/train2014.zip")
    with pytest.raises(download.DownloadError, match="train2014.zip: not a zip archive"):
        download.fetch(page, tmp_path, retries=0)
    wrong_size = download.Item("train2014.zip", "train2014", f"{server.url}/train2014.zip", size=13_510_573_713)
    with pytest.raises(download.DownloadError, match="offers 42 bytes but 13510573713 are expected"):
        download.fetch(wrong_size, tmp_path, retries=0)


def test_table_and_selection():
    names = [item.name for item in download.TABLE]
    assert len(set(names)) == len(names)
    assert set(download.GROUPS) == {"json", "dense", "val2018", "test2018", "train2014", "val2014"}
    assert all(re.match(r"https://www\.dropbox\.com/s/|http://images\.cocodataset\.org/zips/", i.url)
               for i in download.TABLE)
    assert [i.name for i, _ in download.select("dense,val2014", None)] == [
        "visdial_1.0_val_dense_annotations.json", "val2014.zip"]
    assert download.select("val2014", "http://m/x/")[0][1] == "http://m/x/val2014.zip"
    with pytest.raises(download.DownloadError, match="unknown; choose from the groups json,dense"):
        download.select("jsn", None)


def test_a_corrupt_member_is_caught_at_extraction_and_not_trusted(tmp_path, server):
    data = bytearray(make_zip({"VisualDialog_val2018/b.jpg": noise(5000, 5)}))
    data[100] ^= 0xFF  # inside the stored member: the zip directory is intact, the member's CRC-32 is not
    server.files["VisualDialog_val2018.zip"] = bytes(data)
    with pytest.raises(download.DownloadError, match="VisualDialog_val2018.zip: corrupt archive .*CRC"):
        download.fetch(download.Item("VisualDialog_val2018.zip", "val2018", f"{server.url}/VisualDialog_val2018.zip"),
                       tmp_path, retries=0)
    assert not (tmp_path / "VisualDialog_val2018.zip").exists() and not (tmp_path / "checksums.json").exists()
    assert not (tmp_path / ".state" / "VisualDialog_val2018.zip.verified.json").exists()
