"""Fill the plain sbatch templates (services/cluster/templates/*.sbatch) for users without submitit.

The filled scripts run the same command lines as the submitit path (services/cluster/commands.py). For extraction
the array index *is* the shard index, so `--array=3,17` re-embeds exactly shards 3 and 17.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from services.cluster.commands import REPO_ROOT, ExtractPlan, extract_base_command, extract_finalize_command
from services.cluster.config import ClusterSettings, Resources, check_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def job_name(name: str) -> str:
    """A Slurm job name from split/encoder/config names: letters, digits, '.', '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def log_folder(out: Path) -> Path:
    """<out>/logs, the #SBATCH --output folder: a path with spaces cannot be written on an #SBATCH line."""
    logs = out.resolve() / "logs"
    check_text("out (the scripts' log folder)", str(logs), sbatch=True)
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every {{name}}; a placeholder without a value (or a value without a placeholder) is a bug."""
    used = set(PLACEHOLDER.findall(template))
    if used != set(values):
        raise KeyError(f"template placeholders {sorted(used)} != values {sorted(values)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def sbatch_lines(res: Resources) -> str:
    """#SBATCH lines for the optional resources (only those that are set)."""
    lines = [f"#SBATCH --cpus-per-task={res.cpus_per_task}", f"#SBATCH --time={res.timeout_min}"]
    optional = {"partition": res.partition, "gpus-per-node": res.gpus_per_node or None,
                "mem": f"{res.mem_gb}G" if res.mem_gb else None, "account": res.account, "qos": res.qos,
                "constraint": res.constraint}
    lines += [f"#SBATCH --{k}={shlex.quote(str(v))}" for k, v in optional.items() if v is not None]
    return "\n".join(lines)


def array_spec(shards: list[int], parallelism: int) -> str:
    """`0-3,7%8` style: consecutive runs collapsed, throttled to `parallelism` tasks at once."""
    runs: list[list[int]] = []
    for s in sorted(shards):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    spec = ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
    return f"{spec}%{min(parallelism, len(shards))}"


def _write(out: Path, name: str, text: str) -> Path:
    """Write a script and check it with bash's own parser (every value was quoted; this proves it)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(text)
    path.chmod(0o755)
    parsed = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    if parsed.returncode:
        raise RuntimeError(f"{path}: the rendered script does not parse ({parsed.stderr.strip()}); this is a bug in "
                           "services/cluster/render.py")
    return path


def render_extract(cfg: ClusterSettings, plan: ExtractPlan, out: Path) -> tuple[list[Path], str]:
    """Write extract_array.sbatch + finalize.sbatch; return them and the shell lines that submit them."""
    common = {"workdir": shlex.quote(str(REPO_ROOT)), "log_dir": str(log_folder(out))}
    array = fill((TEMPLATES / "extract_array.sbatch").read_text(), {
        **common, "job_name": job_name(plan.job_name), "resources": sbatch_lines(cfg.job),
        "command": shlex.join(extract_base_command(cfg, plan)), "num_shards": str(plan.num_shards)})
    finalize = fill((TEMPLATES / "finalize.sbatch").read_text(), {
        **common, "job_name": job_name(f"{plan.job_name}-finalize"), "resources": sbatch_lines(cfg.finalize),
        "command": shlex.join(extract_finalize_command(cfg, plan))})
    paths = [_write(out, "extract_array.sbatch", array), _write(out, "finalize.sbatch", finalize)]
    array_script, finalize_script = (shlex.quote(str(p)) for p in paths)
    if plan.missing:
        submit = (f"jid=$(sbatch --parsable --array={array_spec(plan.missing, cfg.array_parallelism)} {array_script})\n"
                  f"sbatch --dependency=afterok:${{jid%%;*}} {finalize_script}")
    else:
        submit = f"sbatch {finalize_script}   # every shard is complete: only the index is left"
    return paths, submit


def render_train(cfg: ClusterSettings, command: list[str], name: str, out: Path) -> tuple[list[Path], str]:
    """Write train.sbatch: requeues itself with the resume override when Slurm signals the coming time limit."""
    text = fill((TEMPLATES / "train.sbatch").read_text(), {
        "workdir": shlex.quote(str(REPO_ROOT)), "log_dir": str(log_folder(out)), "job_name": job_name(name),
        "resources": sbatch_lines(cfg.job), "command": shlex.join(command),
        "signal_delay_s": str(cfg.signal_delay_s), "max_requeues": str(cfg.max_requeues),
        "resume_override": shlex.quote(cfg.resume_override), "grace_s": str(cfg.grace_s)})
    path = _write(out, "train.sbatch", text)
    return [path], f"sbatch {shlex.quote(str(path))}"
