"""`python -m services.evaluate compare runs=[runA/eval,runB/eval,...] [out=dir]`: deltas of later runs vs the first.

Writes compare.md, compare.json, compare.png and the resolved config.yaml into the output folder (default:
`<parent of runA's run folder>/compare/<A>_vs_<B>`). A metric missing from a run is shown as "–", never as 0.
"""
from __future__ import annotations

import json
from pathlib import Path

from shared.errors import InputError
from services.evaluate.config import CompareConfig
from services.evaluate.report import LOWER_IS_BETTER, METRIC_LABELS, REPORT_FORMAT, fmt, label, write_json, write_text


class CompareError(InputError):
    """An evaluation folder that cannot be compared."""


def run_name(eval_dir: Path) -> str:
    """outputs/<run>/eval -> <run>; any other folder -> its own name."""
    eval_dir = eval_dir.resolve()
    return eval_dir.parent.name if eval_dir.name == "eval" else eval_dir.name


def load_report(eval_dir: Path) -> dict:
    path = eval_dir / "report.json"
    if not path.is_file():
        raise CompareError(f"{path}: not found; run `python -m services.evaluate --config "
                           f"configs/evaluate/default.yaml predictions=... data=... out={eval_dir}` first")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: line {e.lineno}: not valid JSON ({e.msg}); re-run the evaluation") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise CompareError(f"{path}: format is not {REPORT_FORMAT}; re-run the evaluation with this evaluator")
    return report


def default_out(runs: list[Path]) -> Path:
    first = runs[0].resolve()
    base = first.parent.parent if first.name == "eval" else first.parent
    return base / "compare" / "_vs_".join(run_name(r) for r in runs)


def compare(cfg: CompareConfig) -> dict:
    """Build the delta table, write it as md + json + png, return it."""
    dirs = [Path(r) for r in cfg.runs]
    reports = [load_report(d) for d in dirs]
    names = [run_name(d) for d in dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in dirs]
    known = [m for m in METRIC_LABELS if any(m in r["headline"] for r in reports)]
    extra = sorted({m for r in reports for m in r["headline"]} - set(known))
    metrics = known + extra
    values = [[(r["headline"].get(m) or {}).get("value") for m in metrics] for r in reports]
    table = {}
    for j, m in enumerate(metrics):
        base = values[0][j]
        deltas = [None if base is None or row[j] is None else row[j] - base for row in values]
        table[m] = {"values": [row[j] for row in values], "deltas": deltas,
                    "ci": [(r["headline"].get(m) or {}).get("ci") for r in reports],
                    "higher_is_better": m not in LOWER_IS_BETTER}
    out = Path(cfg.out) if cfg.out else default_out(dirs)
    out.mkdir(parents=True, exist_ok=True)
    result = {"format": "vdmem-eval-compare/1", "baseline": names[0],
              "runs": [{"name": n, "path": str(d), "config_hash": r.get("config_hash"), "split": r.get("split")}
                       for n, d, r in zip(names, dirs, reports)],
              "metrics": table}
    write_json(out / "compare.json", result)
    write_text(out / "compare.md", render_compare(result))
    from services.evaluate.plots import plot_compare

    plot_compare(names, metrics, values, out / "compare.png")
    result["out"] = str(out)
    return result


def render_compare(result: dict) -> str:
    names = [r["name"] for r in result["runs"]]
    base = names[0]
    header = ["metric", *names, *[f"{n} − {base}" for n in names[1:]]]
    lines = [f"# Run comparison (baseline: {base})", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for m, row in result["metrics"].items():
        deltas = [("–" if d is None else f"{d:+.4f}") for d in row["deltas"][1:]]
        lines.append("| " + " | ".join([label(m), *[fmt(v, m) for v in row["values"]], *deltas]) + " |")
    splits = {r["split"] for r in result["runs"]}
    lines += ["", "Mean rank: lower is better; every other metric: higher is better."]
    if len(splits) > 1:
        lines.append(f"Warning: the runs were evaluated on different splits ({', '.join(sorted(map(str, splits)))}).")
    return "\n".join(lines) + "\n"


def run(cfg: CompareConfig) -> None:
    """The `compare` verb: write compare.md/json/png and print the table."""
    from shared.config import save_config

    result = compare(cfg)
    save_config(cfg, result["out"])
    print((Path(result["out"]) / "compare.md").read_text())
    print(f"compare: wrote {result['out']}/compare.md, compare.json, compare.png")
