"""Repack a wheel without some of its files and keep it valid (RECORD rewritten with every kept file's sha256 + size).

    python docker/repack_wheel.py IN.whl OUT_DIR --drop REGEX [--drop REGEX ...] [--build-tag 1cu130]

Used by docker/gpu_bundle.sh to carry bitsandbytes with only the native library the GPU machine loads (its wheel holds
one per CUDA version: 41 MiB). --drop: paths inside the wheel matching any regex (re.search) are left out.
--build-tag: a PEP 427 build tag (starts with a digit) in the file name and the WHEEL file, so the repacked wheel is
never mistaken for the published one (pip still installs it as NAME==VERSION). Prints the new wheel's path.
"""
from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import re
import sys
import zipfile
from pathlib import Path


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(wheel: Path, out_dir: Path, drops: list[str], build_tag: str | None) -> Path:
    if build_tag is not None and not re.fullmatch(r"\d[\w.]*", build_tag):
        raise SystemExit("--build-tag must start with a digit (PEP 427)")
    parts = wheel.name[:-len(".whl")].split("-")  # name-version(-build)?-python-abi-platform
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / ("-".join(parts[:2] + ([build_tag] if build_tag else []) + parts[-3:]) + ".whl")
    patterns = [re.compile(d) for d in drops]
    with zipfile.ZipFile(wheel) as src:
        infos = [i for i in src.infolist() if not i.is_dir()]
        dist_info = next(i.filename.split("/")[0] for i in infos if i.filename.endswith(".dist-info/WHEEL"))
        record_name = f"{dist_info}/RECORD"
        kept = [i for i in infos if i.filename != record_name and not any(p.search(i.filename) for p in patterns)]
        dropped = len(infos) - 1 - len(kept)
        kept.sort(key=lambda i: (i.filename.startswith(dist_info + "/"), i.filename))  # dist-info last (PEP 427)
        rows = []
        with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
            for info in kept:
                data = src.read(info.filename)
                if info.filename == f"{dist_info}/WHEEL" and build_tag:
                    text = re.sub(r"(?m)^Build:.*\n", "", data.decode())
                    data = (text.rstrip("\n") + f"\nBuild: {build_tag}\n").encode()
                entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                entry.external_attr = info.external_attr  # the executable bits of the .so files
                entry.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(entry, data, compresslevel=9)
                rows.append((info.filename, record_hash(data), str(len(data))))
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerows(rows + [(record_name, "", "")])
            entry = zipfile.ZipInfo(record_name, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            dst.writestr(entry, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    print(f"{wheel.name}: {wheel.stat().st_size} -> {out_path.stat().st_size} bytes, {dropped} files dropped",
          file=sys.stderr)
    return out_path


def check_records(wheel: Path) -> list[str]:
    """Files whose sha256 or size differ from the wheel's RECORD (pip refuses such a wheel)."""
    bad = []
    with zipfile.ZipFile(wheel) as z:
        record = next(n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/RECORD"))
        rows = {r[0]: r for r in csv.reader(io.StringIO(z.read(record).decode())) if r}
        for name in z.namelist():
            if name.endswith("/") or name == record:
                continue
            data = z.read(name)
            if name not in rows or rows[name][1] != record_hash(data) or rows[name][2] != str(len(data)):
                bad.append(f"{wheel.name}: {name}")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("out_dir", type=Path, nargs="?")
    parser.add_argument("--drop", action="append", default=[])
    parser.add_argument("--build-tag")
    parser.add_argument("--check", action="store_true", help="only check the RECORD of WHEEL")
    args = parser.parse_args()
    if args.check:
        bad = check_records(args.wheel)
        print("\n".join(bad) or f"{args.wheel.name}: RECORD ok")
        return 1 if bad else 0
    print(repack(args.wheel, args.out_dir, args.drop, args.build_tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
