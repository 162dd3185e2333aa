"""Fill the plain sbatch templates (services/cluster/templates/*.sbatch) for users without submitit.

The filled scripts run the same command lines as the submitit path (services/cluster/commands.py). For extraction
the array index *is* the shard index, so `--array=3,17` re-embeds exactly shards 3 and 17.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from services.cluster.commands import REPO_ROOT, ExtractPlan, extract_base_command, extract_finalize_command
from services.cluster.config import ClusterSettings, Resources, StageSettings

TEMPLATES = Path(__file__).resolve().parent / "templates"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


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
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def render_extract(cfg: ClusterSettings, plan: ExtractPlan, out: Path) -> tuple[list[Path], str]:
    """Write extract_array.sbatch + finalize.sbatch; return them and the shell lines that submit them."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    common = {"workdir": shlex.quote(str(REPO_ROOT)), "log_dir": str(logs)}
    array = fill((TEMPLATES / "extract_array.sbatch").read_text(), {
        **common, "job_name": plan.job_name, "resources": sbatch_lines(cfg.job),
        "command": shlex.join(extract_base_command(cfg, plan)), "num_shards": str(plan.num_shards)})
    finalize = fill((TEMPLATES / "finalize.sbatch").read_text(), {
        **common, "job_name": f"{plan.job_name}-finalize", "resources": sbatch_lines(cfg.finalize),
        "command": shlex.join(extract_finalize_command(cfg, plan))})
    paths = [_write(out, "extract_array.sbatch", array), _write(out, "finalize.sbatch", finalize)]
    if plan.missing:
        submit = (f"jid=$(sbatch --parsable --array={array_spec(plan.missing, cfg.array_parallelism)} {paths[0]})\n"
                  f"sbatch --dependency=afterok:${{jid%%;*}} {paths[1]}")
    else:
        submit = f"sbatch {paths[1]}   # every shard is complete: only the index is left"
    return paths, submit


def render_train(cfg: ClusterSettings, command: list[str], name: str, out: Path) -> tuple[list[Path], str]:
    """Write train.sbatch: requeues itself with the resume override when Slurm signals the coming time limit."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    text = fill((TEMPLATES / "train.sbatch").read_text(), {
        "workdir": shlex.quote(str(REPO_ROOT)), "log_dir": str(logs), "job_name": name,
        "resources": sbatch_lines(cfg.job), "command": shlex.join(command),
        "signal_delay_s": str(cfg.signal_delay_s), "max_requeues": str(cfg.max_requeues),
        "resume_override": shlex.quote(cfg.resume_override), "grace_s": str(cfg.grace_s)})
    path = _write(out, "train.sbatch", text)
    return [path], f"sbatch {path}"
