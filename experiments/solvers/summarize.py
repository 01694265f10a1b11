"""Summaries of experiments/solvers/run.sh.

  python summarize.py best-spacing <pilot eval.json> <solver>   the pilot's lowest-FID step schedule of a solver
  python summarize.py report <run dir> <out dir>                 tables.md, scores.json and fid_vs_nfe.png
"""

import json
import sys
from pathlib import Path

from diffusion_lab.evaluate import plot_against
from diffusion_lab.plotting import save

BUDGETS = [5, 10, 20, 50, 100, 200]


def solver_of(row: dict) -> str:
    """The conf/sampler/ option of a result row: its label without the step schedule."""
    return row["sampler"].split("+")[0]


def best_spacing(pilot: Path, solver: str) -> str:
    rows = [r for r in json.loads(pilot.read_text())["results"] if solver_of(r) == solver]
    return min(rows, key=lambda r: r["fid"])["spacing"]


def cell(row: dict | None) -> str:
    if row is None:
        return "-"
    low, high = row.get("fid_ci") or (None, None)
    return f"{row['fid']:.1f} [{low:.1f}, {high:.1f}]" if low is not None else f"{row['fid']:.1f}"


def report(run: Path, out: Path) -> None:
    pilot = json.loads((run / "eval-pilot" / "eval.json").read_text())
    evals = {p.name.removeprefix("eval-"): json.loads((p / "eval.json").read_text())
             for p in sorted(run.glob("eval-*")) if p.name not in ("eval-pilot", "eval-paired-200")}
    rows = [r for e in evals.values() for r in e["results"]]
    lines = [f"# Solvers at equal cost: {pilot['run_name']}, real_n = {pilot['real_n']}", "",
             f"## Pilot: FID at NFE 10 per step schedule (n = {pilot['results'][0]['n']}, 95 % intervals)", ""]
    spacings = list(dict.fromkeys(r["spacing"] for r in pilot["results"]))
    lines += ["| solver | " + " | ".join(spacings) + " |", "|---" * (len(spacings) + 1) + "|"]
    for solver in dict.fromkeys(solver_of(r) for r in pilot["results"]):
        by = {r["spacing"]: r for r in pilot["results"] if solver_of(r) == solver}
        lines.append(f"| {solver} | " + " | ".join(cell(by.get(s)) for s in spacings) + " |")
    n = sorted({r["n"] for r in rows})
    lines += ["", f"## FID against NFE, each solver on its pilot-best schedule (n = {', '.join(map(str, n))})", "",
              "| solver (schedule) | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " |",
              "|---" * (len(BUDGETS) + 1) + "|"]
    for solver, e in evals.items():
        mine = e["results"]
        by = {b: next((r for r in mine if r["nfe"] <= b and r is max((q for q in mine if q["nfe"] <= b),
                                                                      key=lambda q: q["nfe"])), None)
              for b in BUDGETS}
        lines.append(f"| {mine[0]['sampler']} | " + " | ".join(
            cell(by[b]) + (f" ({by[b]['nfe']})" if by[b] and by[b]["nfe"] != b else "") for b in BUDGETS) + " |")
    lines += ["", "## Seconds per 1,000 images (sampling alone, this machine)", "",
              "| solver (schedule) | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " |",
              "|---" * (len(BUDGETS) + 1) + "|"]
    for solver, e in evals.items():
        by = {}
        for r in e["results"]:
            by[min((b for b in BUDGETS if b >= r["nfe"]), default=None)] = r
        lines.append(f"| {e['results'][0]['sampler']} | " + " | ".join(
            f"{by[b]['seconds_per_1k']:.0f}" if b in by else "-" for b in BUDGETS) + " |")
    floor = {r.get("floor_fid") for r in rows} - {None}
    lines += ["", f"FID floor (n real training images against the test set): {', '.join(f'{f:.2f}' for f in floor)}"]
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    keep = ("sampler", "spacing", "steps", "nfe", "n", "fid", "fid_ci", "fid_inf", "kid_mean", "kid_ci",
            "floor_fid", "seconds_per_1k")
    (out / "scores.json").write_text(json.dumps({
        "pilot": [{k: r.get(k) for k in keep} for r in pilot["results"]],
        "results": [{k: r.get(k) for k in keep} for r in rows]}, indent=1) + "\n")
    save(plot_against(rows, "fid", "nfe"), out / "fid_vs_nfe.png")
    save(plot_against(rows, "fid", "seconds"), out / "fid_vs_seconds.png")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "best-spacing":
        print(best_spacing(Path(args[0]), args[1]))
    else:
        report(Path(args[0]), Path(args[1]))
