"""The demo pipeline in real containers through compose.yaml's services, checked against the venvs.

A non-root user, in a fresh checkout with no venvs, runs `RUNNER=docker DEVICE=cpu make demo` (README) at the tiny
size of tests/e2e: every stage - demo data, SmolLM2 conversion, `docker compose run --rm extract-cpu` for train and
val, the bridge (`train-cpu`), infer, `evaluate` - runs in a container. Its outputs are then held against the local
venvs' runs of the same configs on the same inputs (in a root-owned reference folder), and a second bridge run is
killed with `docker kill` after its first checkpoint and resumed. Tests run in file order on one demo run.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.shards._reader import VERIFIED_SUFFIX

from tests.docker import names as n
from tests.docker.checkout import ROOT, USER, UserClient, copy_checkout, owners
from tests.docker.conftest import RECORD

pytestmark = [pytest.mark.docker, pytest.mark.slow]
VENV = {name: ROOT / ".venvs" / name / "bin" / "python" for name in ("extract", "train", "evaluate")}
KILLED_RUN = f"{n.RUN}-killed"  # the bridge run that is interrupted and resumed
KILLED_CONTAINER = "vdmem-test-bridge"


def venv_run(env: str, args: list[str], cwd: Path, timeout: int = 900) -> None:
    environ = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([str(VENV[env]), *args], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest(checkout: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mode, sha256) of every file outside the bind-mounted folders."""
    mounts = n.mount_folders(checkout)
    return {str(p.relative_to(checkout)): (p.stat().st_size, p.stat().st_mode, sha256(p))
            for p in sorted(checkout.rglob("*")) if p.is_file() and not any(m in p.parents for m in mounts)}


@dataclass
class Demo:
    user: Path  # the non-root user's checkout, bind-mounted into the containers
    ref: Path  # the venv runs' folder: the same relative layout, the user's demo data linked in
    client: UserClient
    make: subprocess.CompletedProcess
    before: dict[str, tuple[int, int, str]]


@pytest.fixture(scope="module")
def demo(built, engine):
    base = Path(tempfile.mkdtemp(prefix="vdmem-docker-demo-"))
    base.chmod(0o755)  # the user must reach its checkout inside
    try:
        user, ref = copy_checkout(base / "checkout"), base / "venv"
        before = manifest(user)
        client = UserClient(engine, user)
        start = time.monotonic()
        proc = client.run("make", "demo", "RUNNER=docker", "DEVICE=cpu", f"DATA_ARGS={' '.join(n.DATA_ARGS)}",
                          f"TRAIN_ARGS={' '.join(n.BRIDGE_ARGS)}", timeout=2400, check=False)
        RECORD["stage_s"]["make-demo-docker"] = round(time.monotonic() - start, 1)
        RECORD["stage_s"].update({f"make-demo-{stage}": int(s) for stage, s in
                                  re.findall(r"^== demo: (\w+) done in (\d+) s$", proc.stdout, flags=re.M)})
        ref.mkdir()
        (ref / "data").symlink_to(user / "data")  # the same inputs: the containers' demo data and SmolLM2
        (ref / "checkpoints").symlink_to(user / "checkpoints")
        yield Demo(user, ref, client, proc, before)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_make_demo_runs_every_stage_in_containers(demo):
    out = demo.make.stdout + demo.make.stderr
    assert demo.make.returncode == 0, out[-6000:]
    for stage in ("data", "checkpoints", "extract", "train", "infer", "evaluate"):
        assert f"== demo: {stage} done" in out, out[-3000:]
    assert "docker compose run --rm extract-cpu" in out and "docker compose run --rm train-cpu" in out
    report = (demo.user / n.REPORT).read_text()
    assert report.strip() and report.strip() in demo.make.stdout  # make demo ends by printing it
    assert not (demo.user / ".venvs").exists(), "make demo with RUNNER=docker built local venvs"


@pytest.mark.parametrize("service", ["extract-cpu", "train-cpu", "evaluate"])
def test_containers_run_as_the_invoking_user(demo, service):
    out = demo.client.compose("run", "--rm", "--entrypoint", "id", service).stdout
    assert out.startswith(f"uid={USER[0]}(vdmem) gid={USER[1]}(vdmem)"), out


@pytest.mark.parametrize("split", ["train", "val"])
def test_extract_cpu_shards_equal_the_venv_run(demo, split):
    venv_run("extract", ["-m", "services.extract", "--config", str(ROOT / n.EXTRACT_CONFIG), f"split={split}"],
             demo.ref)
    # what the extraction wrote; readers' `<shard>.verified.json` records (mtimes) are not part of it
    container, venv = ({k: v for k, v in digests(p / n.EMBEDDINGS / split).items() if not k.endswith(VERIFIED_SUFFIX)}
                       for p in (demo.user, demo.ref))
    assert "index.json" in container and any(k.endswith(".safetensors") for k in container), sorted(container)
    assert container == venv
    assert json.loads((demo.user / n.EMBEDDINGS / split / "index.json").read_text())["total_rows"] == n.DIALOGS[split]


def test_bridge_killed_after_its_first_checkpoint_resumes_to_the_uninterrupted_weights(demo, engine, tmp_path):
    """make demo's bridge ran uninterrupted; the same config under another run name is killed, then resumed."""
    bridge = ["train-cpu", "bridge", "--config", n.BRIDGE_CONFIG, *n.BRIDGE_ARGS, f"run={KILLED_RUN}"]
    start = time.monotonic()
    proc = demo.client.popen("docker", "compose", "run", "--rm", "--name", KILLED_CONTAINER, *bridge,
                             log=tmp_path / "bridge.log")
    latest = n.bridge_checkpoints(demo.user, KILLED_RUN) / "latest.json"
    deadline = time.monotonic() + 900
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = engine.docker("kill", KILLED_CONTAINER, check=False)
    proc.wait(timeout=120)
    log = (tmp_path / "bridge.log").read_text()
    assert latest.exists(), f"the container never wrote its first checkpoint:\n{log[-4000:]}"
    assert killed.returncode == 0, f"docker kill failed ({killed.stderr}); did the run end first?\n{log[-3000:]}"
    assert proc.returncode != 0
    stopped_at = json.loads(latest.read_text())["step"]
    assert stopped_at < n.MAX_STEPS, "the run finished before it was killed: nothing was resumed"

    demo.client.compose("run", "--rm", *bridge, "resume=true")
    RECORD["stage_s"]["bridge-killed-and-resumed"] = round(time.monotonic() - start, 1)
    resumed, uninterrupted = (n.step_dir(demo.user, n.MAX_STEPS, run) / "weights.safetensors"
                              for run in (KILLED_RUN, n.RUN))
    assert sha256(resumed) == sha256(uninterrupted), f"killed after step {stopped_at}: the resumed weights differ"
    steps = [json.loads(line).get("step") for line in n.metrics(demo.user, KILLED_RUN).read_text().splitlines()]
    steps = [s for s in steps if s is not None]
    assert len(steps) == len(set(steps)) and max(steps) == n.MAX_STEPS, steps


def test_infer_wrote_every_round(demo):
    preds = [json.loads(line) for line in (demo.user / n.PREDICTIONS).read_text().splitlines()]
    assert len(preds) == n.DIALOGS["val"] * 10 and all(len(p["scores"]) == 13 for p in preds)


def test_evaluate_report_equals_the_venv_report_on_the_same_predictions(demo):
    (demo.ref / n.PREDICTIONS).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(demo.user / n.PREDICTIONS, demo.ref / n.PREDICTIONS)
    venv_run("evaluate", ["-m", "services.evaluate", "--config", str(ROOT / n.EVALUATE_CONFIG)], demo.ref)
    container, venv = ((p / n.REPORT).read_text() for p in (demo.user, demo.ref))
    assert "R@1" in container, container[:500]
    assert container == venv


def test_outputs_in_the_bind_mounts_belong_to_the_invoking_user(demo):
    for folder in n.mount_folders(demo.user):
        assert owners(folder) == {USER}, f"{folder}: owned by {owners(folder)}, not {USER}"


def test_a_container_cannot_write_outside_its_mounts(demo):
    script = ("for p in /workspace/configs/probe /opt/venv/probe /etc/probe /usr/local/probe /probe; do "
              "touch \"$p\" 2>/dev/null && echo \"WROTE $p\"; done; "
              "touch /workspace/services/probe && echo own-layer-ok; touch /workspace/outputs/probe && echo mount-ok")
    out = demo.client.compose("run", "--rm", "--entrypoint", "sh", "evaluate", "-c", script).stdout
    assert "WROTE" not in out, out  # read-only config mount; image paths owned by root
    assert "mount-ok" in out and owners(demo.user / "outputs" / "probe") == {USER}
    # what it writes in its own layer (its copy of the code) stays there: the checkout outside the mounts is unchanged
    assert "own-layer-ok" in out and manifest(demo.user) == demo.before
