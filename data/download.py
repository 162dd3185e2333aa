"""Download the real VisDial v1.0 data and images: `python data/download.py --out data/visdial [--only json,dense]`.

Every file comes from its official URL (table below; visualdialog.org/data links the VisDial files, cocodataset.org
the COCO zips). Downloads go to `<name>.part` and resume with an HTTP Range request after an interruption; a finished
file is checked against its expected size and checksum, then zips are extracted into --out. Checksums the table does
not know are recorded in <out>/checksums.json on the first download and enforced on every later run. Markers under
<out>/.state/ make a rerun skip whatever is complete. Only the standard library is used.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "vdmem-data-download/1 (python urllib)"


@dataclass(frozen=True)
class Item:
    """One file to fetch. size/sha256/md5 are None where no published value is known (see checksums.json)."""

    name: str
    group: str  # what --only selects
    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    extract: bool = True


DROPBOX = "https://www.dropbox.com/s"
TABLE = (
    Item("visdial_1.0_train.zip", "json", f"{DROPBOX}/ix8keeudqrd8hn8/visdial_1.0_train.zip?dl=1"),
    Item("visdial_1.0_val.zip", "json", f"{DROPBOX}/ibs3a0zhw74zisc/visdial_1.0_val.zip?dl=1"),
    Item("visdial_1.0_test.zip", "json", f"{DROPBOX}/o7mucbre2zm7i5n/visdial_1.0_test.zip?dl=1"),
    Item("visdial_1.0_val_dense_annotations.json", "dense",
         f"{DROPBOX}/3knyk09ko4xekmc/visdial_1.0_val_dense_annotations.json?dl=1", extract=False),
    Item("VisualDialog_val2018.zip", "val2018", f"{DROPBOX}/twmtutniktom7tu/VisualDialog_val2018.zip?dl=1"),
    Item("VisualDialog_test2018.zip", "test2018", f"{DROPBOX}/mwlrg31hx0430mt/VisualDialog_test2018.zip?dl=1"),
    # COCO 2014 sizes and MD5s as published for these zips (no official SHA-256 exists; it is recorded on first run)
    Item("train2014.zip", "train2014", "http://images.cocodataset.org/zips/train2014.zip", 13_510_573_713,
         md5="0da8c0bd3d6becc4dcb32757491aca88"),
    Item("val2014.zip", "val2014", "http://images.cocodataset.org/zips/val2014.zip", 6_645_013_297,
         md5="a3d79f5ed8d289b7a7554ce06a5782b3"),
)
GROUPS = tuple(dict.fromkeys(item.group for item in TABLE))


class DownloadError(RuntimeError):
    """A download that cannot succeed without the user's help; the message says what to do."""


class _Transient(Exception):
    """A failure worth retrying (connection cut, timeout, 5xx); the .part file keeps what arrived."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError as e:
        raise DownloadError(f"{path}: not valid JSON ({e}); delete it (it is rebuilt from the downloads)") from None


def _transfer(item: Item, url: str, part: Path, timeout: float) -> None:
    """Fetch `url` into `part`, continuing from the bytes already there. Raises _Transient on retryable trouble."""
    offset = part.stat().st_size if part.exists() else 0
    if item.size is not None and offset >= item.size:
        if offset > item.size:
            part.unlink()
            raise _Transient(f"{part} is larger than the expected {item.size} bytes; restarting from zero")
        return
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left past our offset: complete if the server's total agrees
            total = re.search(r"/(\d+)", e.headers.get("Content-Range", "") or "")
            if total and int(total.group(1)) == offset:
                return
            part.unlink()
            raise _Transient(f"HTTP 416 for a resume at byte {offset}; restarting from zero") from None
        if e.code in RETRYABLE_STATUS:
            raise _Transient(f"HTTP {e.code} {e.reason} from {url}") from None
        raise DownloadError(f"{item.name}: HTTP {e.code} {e.reason} from {url}; the link is wrong or has moved: "
                            "check https://visualdialog.org/data (VisDial) or https://cocodataset.org/#download "
                            "(COCO), or point --base-url at a mirror") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise _Transient(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
    with response:
        mode, total = "wb", response.headers.get("Content-Length")
        total = int(total) if total else None
        if response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink()
                raise _Transient(f"server answered the resume at byte {offset} with the wrong range; restarting")
            mode = "ab"
            total = int(match.group(2)) if match.group(2) != "*" else None
        elif offset:
            _log(f"{item.name}: server ignored the resume request; downloading from byte 0")
            offset = 0
        if item.size is not None and total is not None and total != item.size:
            raise DownloadError(f"{item.name}: {url} offers {total} bytes but {item.size} are expected; the file "
                                "changed upstream or the URL serves something else (an error page?): check the URL")
        expected_now = None if total is None else total - offset
        received, last_report = 0, time.monotonic()
        with part.open(mode) as f:
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    if time.monotonic() - last_report > 10:
                        last_report = time.monotonic()
                        _log(f"{item.name}: {(offset + received) / 1e6:,.0f} of "
                             f"{'?' if total is None else f'{total / 1e6:,.0f}'} MB")
            except (http.client.HTTPException, OSError) as e:
                raise _Transient(f"connection lost after {offset + received} bytes ({e!r})") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
        if expected_now is not None and received < expected_now:
            raise _Transient(f"connection closed after {offset + received} of {total} bytes")


def _digests(path: Path, want_md5: bool) -> tuple[str, str | None]:
    sha, md5 = hashlib.sha256(), (hashlib.md5(usedforsecurity=False) if want_md5 else None)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            sha.update(block)
            if md5:
                md5.update(block)
    return sha.hexdigest(), (md5.hexdigest() if md5 else None)


def _verify(item: Item, part: Path, checksums: dict) -> tuple[str, bool]:
    """Size, checksum and type of a finished download -> (sha256, whether to record it as trusted on first use).

    A bad file is deleted, so a rerun fetches it afresh."""
    def reject(problem: str, fix: str) -> DownloadError:
        part.unlink()
        return DownloadError(f"{item.name}: {problem}; the download was deleted: {fix}")

    size = part.stat().st_size
    if item.size is not None and size != item.size:
        raise reject(f"{size} bytes, expected {item.size}", "rerun to download it again")
    sha256, md5 = _digests(part, item.md5 is not None)
    recorded = checksums.get(item.name, {}).get("sha256")
    expected, source = (item.sha256, "the table in data/download.py") if item.sha256 else (recorded, "checksums.json")
    if expected and sha256 != expected:
        raise reject(f"sha256 {sha256} does not match {expected} from {source}",
                     "rerun to download it again; if it keeps failing the file changed upstream "
                     f"(remove its entry from {source} only if you trust the new file)")
    if item.md5 and md5 != item.md5:
        raise reject(f"md5 {md5} does not match the published {item.md5}", "rerun to download it again")
    with part.open("rb") as f:
        head = f.read(40)
    if item.extract and not zipfile.is_zipfile(part):
        raise reject(f"not a zip archive (starts with {head!r})",
                     "the server sent an error page instead of the file; check the URL in a browser")
    if item.name.endswith(".json"):
        try:
            json.loads(part.read_bytes())
        except ValueError as e:
            raise reject(f"not valid JSON ({e}; starts with {head!r})", "rerun; if it repeats, check the URL") from None
    return sha256, not expected


def _extract(item: Item, archive: Path, out: Path) -> int:
    """Unzip into `out` (zipfile drops absolute and '..' member paths, checks each member's CRC); returns the count."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            zf.extractall(out)
    except (zipfile.BadZipFile, EOFError) as e:
        archive.unlink()
        raise DownloadError(f"{item.name}: corrupt archive ({e}); it was deleted: rerun to download it again") from None
    except OSError as e:
        raise DownloadError(f"{item.name}: extraction into {out} failed ({e}); free disk space or fix the "
                            "permissions, then rerun (the verified archive is kept)") from None
    return len(members)


def _download(item: Item, url: str, part: Path, retries: int, backoff: float, timeout: float) -> None:
    """Transfer with retries and exponential backoff; every attempt resumes from what `part` already holds."""
    for attempt in range(retries + 1):
        try:
            return _transfer(item, url, part, timeout)
        except _Transient as e:
            kept = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(f"{item.name}: {e}; gave up after {retries + 1} attempts; rerun to resume "
                                    f"from the {kept} bytes kept in {part}") from None
            delay = min(backoff * 2 ** attempt, 300.0)
            _log(f"{item.name}: {e}; retry {attempt + 1}/{retries} in {delay:.1f} s from byte {kept}")
            time.sleep(delay)


def fetch(item: Item, out: Path, *, url: str | None = None, retries: int = 5, backoff: float = 2.0,
          timeout: float = 60.0, delete_archive: bool = False) -> str:
    """Make one item complete under `out`: download (resuming), verify, extract. Returns what was done.

    A checksum is recorded as trusted only after the archive also extracted cleanly (zip CRCs), and the markers
    are written last, so an interruption at any point leaves a state that the next run completes."""
    state = out / ".state"
    state.mkdir(parents=True, exist_ok=True)
    dest, part = out / item.name, out / f"{item.name}.part"
    verified_marker, extracted_marker = state / f"{item.name}.verified.json", state / f"{item.name}.extracted.json"
    if item.extract and extracted_marker.is_file():
        return "complete"
    marker, stat = _read_json(verified_marker), (dest.stat() if dest.is_file() else None)
    if stat and (marker.get("bytes"), marker.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
        action, members = "verified earlier", _extract(item, dest, out) if item.extract else None
    else:
        if dest.is_file():  # present but not (or no longer) verified: check it again from the start
            os.replace(dest, part)
        missing = None if item.size is None else item.size - (part.stat().st_size if part.exists() else 0)
        if missing is not None and shutil.disk_usage(out).free < missing:
            raise DownloadError(f"{item.name}: needs {missing / 1e9:.1f} GB more and {out} has "
                                f"{shutil.disk_usage(out).free / 1e9:.1f} GB free; free space or choose another --out")
        url = url or item.url
        _download(item, url, part, retries, backoff, timeout)
        checksums_path = out / "checksums.json"
        checksums = _read_json(checksums_path)
        sha256, trust_first_use = _verify(item, part, checksums)
        os.replace(part, dest)
        members = _extract(item, dest, out) if item.extract else None
        if trust_first_use:
            checksums[item.name] = {"sha256": sha256, "bytes": dest.stat().st_size,
                                    "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "url": url}
            _write_json_atomic(checksums_path, checksums)
            _log(f"{item.name}: no published sha256; recorded {sha256} in {checksums_path}, enforced from now on")
        _write_json_atomic(verified_marker, {"bytes": dest.stat().st_size, "mtime_ns": dest.stat().st_mtime_ns,
                                             "sha256": sha256, "url": url})
        action = "downloaded"
    if members is not None:
        _write_json_atomic(extracted_marker, {"members": members, "archive": item.name})
        action += f", extracted {members} files"
        if delete_archive:
            dest.unlink()
    return action


def select(only: str | None, base_url: str | None) -> list[tuple[Item, str]]:
    """The items --only names (groups or file names), each with the URL to fetch it from."""
    items = list(TABLE)
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in GROUPS and w not in {i.name for i in TABLE}]
        if unknown:
            raise DownloadError(f"--only {','.join(unknown)}: unknown; choose from the groups {','.join(GROUPS)} "
                                "or a file name of the table in data/download.py")
        items = [i for i in TABLE if i.group in wanted or i.name in wanted]
    return [(i, f"{base_url.rstrip('/')}/{i.name}" if base_url else i.url) for i in items]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/visdial"))
    parser.add_argument("--only", help=f"comma-separated groups ({','.join(GROUPS)}) or file names; default all")
    parser.add_argument("--base-url", help="fetch every file as <base-url>/<file name> (a mirror, or a test server)")
    parser.add_argument("--retries", type=int, default=5, help="retries per file on a cut connection or 5xx")
    parser.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds (doubles each time)")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    parser.add_argument("--delete-archives", action="store_true", help="delete each zip once it is extracted")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for item, url in select(args.only, args.base_url):
            done = fetch(item, args.out, url=url, retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                         delete_archive=args.delete_archives)
            print(f"{item.name}: {done}")
    except DownloadError as e:
        print(f"download: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
