"""The three images, really built: what they hold, who they run as, and that an unchanged rebuild is all cache."""
from __future__ import annotations

import dataclasses
import re
import secrets

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.docker.checkout import ROOT, USER
from tests.docker.conftest import RECORD
from tests.docker import images
from tests.docker.images import ENVS

pytestmark = pytest.mark.docker
TOOLS = {"pip", "setuptools", "wheel"}  # a venv's own installers: `pip freeze` leaves them out unless --all


def pins(env: str) -> dict[str, Requirement]:
    """The requirements the image installs: <env>.txt and <env>.nodeps.txt (not test.txt / <env>.local.txt)."""
    out = {}
    for name in (f"{env}.txt", f"{env}.nodeps.txt"):
        path = ROOT / "docker" / "requirements" / name
        for line in path.read_text().splitlines() if path.exists() else []:
            line = line.split("#", 1)[0].strip()
            if line:
                req = Requirement(line)
                out[canonicalize_name(req.name)] = req
    return out


def freeze_mismatches(freeze_all: list[str], wanted: dict[str, Requirement]) -> list[str]:
    """Differences between `pip freeze --all` lines and the pins; [] when the image holds exactly the pins.

    A pin without a local label matches one with it (PEP 440: torch==2.13.0 is satisfied by 2.13.0+cpu)."""
    installed, problems = {}, []
    for line in freeze_all:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if not m:
            problems.append(f"not installed from a pinned release: {line}")
            continue
        installed[canonicalize_name(m.group(1))] = m.group(2)
    for name, req in wanted.items():
        if name not in installed:
            problems.append(f"missing: {req}")
        elif not req.specifier.contains(installed[name], prereleases=True):
            problems.append(f"{name}=={installed[name]} does not satisfy {req}")
    problems += [f"not pinned: {n}=={v}" for n, v in installed.items() if n not in wanted and n not in TOOLS]
    return problems


@pytest.mark.parametrize("env", ENVS)
def test_pip_freeze_equals_the_pins(env, built, engine, builder):
    image = builder.specs[env].image
    out = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "pip", image, "freeze", "--all").stdout
    assert freeze_mismatches(out.splitlines(), pins(env)) == []


def test_the_freeze_comparison_can_fail():
    wanted = pins("evaluate")
    exact = [f"{n}=={next(iter(r.specifier)).version}" for n, r in wanted.items()]
    assert freeze_mismatches(exact + ["pip==23.0.1"], wanted) == []
    assert "missing: nltk==3.10.4" in freeze_mismatches([e for e in exact if not e.startswith("nltk==")], wanted)
    assert freeze_mismatches(exact + ["torchvision==0.29.1"], wanted) == ["not pinned: torchvision==0.29.1"]
    bumped = [e.replace("numpy==2.4.6", "numpy==2.4.5") for e in exact]
    assert freeze_mismatches(bumped, wanted) == ["numpy==2.4.5 does not satisfy numpy==2.4.6"]


@pytest.mark.parametrize("env", ENVS)
def test_image_runs_as_the_build_user_not_root(env, built, engine, builder):
    image = builder.specs[env].image
    assert engine.docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip() == f"{USER[0]}:{USER[1]}"
    ids = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "id", image).stdout
    assert f"uid={USER[0]}(vdmem) gid={USER[1]}(vdmem)" in ids


@pytest.mark.parametrize("env", ENVS)
def test_unchanged_rebuild_is_a_cache_hit(env, built, engine, builder):
    before = engine.docker("image", "inspect", "-f", "{{.Id}}", builder.specs[env].image).stdout
    again = builder.build(env, "again")
    RECORD["rebuild_s"][env] = round(again.seconds, 1)
    assert again.steps, "no build steps found in BuildKit's output; has its format changed?"
    assert again.executed == [], f"steps ran again although nothing changed: {again.executed}"
    assert engine.docker("image", "inspect", "-f", "{{.Id}}", builder.specs[env].image).stdout == before
    assert again.seconds < 60, f"a build that is all cache took {again.seconds:.0f} s"


def test_a_changed_build_argument_is_not_a_cache_hit(built, engine, builder):
    """The check above can fail: another UID re-runs the user step (and only the steps after it). The UID is new
    each session, or the layer cache would remember it (each leaves a ~7 MB code layer in the cache)."""
    spec = builder.specs["evaluate"]
    uid = str(USER[0] + 1 + secrets.randbelow(10_000))
    other = dataclasses.replace(spec, image="vdmem-evaluate:uid-control", args={**spec.args, "UID": uid})
    result = images.build(engine, other, builder.extra_args(spec), builder.secrets, builder.workdir / "control.log")
    engine.docker("rmi", other.image)
    RECORD["rebuild_s"]["evaluate_other_uid"] = round(result.seconds, 1)
    assert any("useradd" in step for step in result.executed), result.executed
    assert not any("pip install" in step for step in result.executed), "the UID must not reinstall the packages"
