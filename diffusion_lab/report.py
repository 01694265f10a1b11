"""A local report of many runs, from their run directories alone: one self-contained HTML file (tables, charts
and sample grids inline; no network) and a report.md beside it.

    python report.py <multirun dir | run dirs...> [-o report.html] [--wandb entity/project]
"""

import argparse
import base64
import csv
import html
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from diffusion_lab.checkpoints import override_key
from diffusion_lab.config import CONFIG_GROUPS, short_override
from diffusion_lab.errors import ConfigError
from diffusion_lab.runs import fresh_file, write_atomic
from diffusion_lab.viz import figure

CHOICE_GROUPS = ("dataset", "schedule", "model", "sampler", "experiment")
LOWER_IS_BETTER = ("train loss", "val loss", "FID", "KID", "train min")


@dataclass
class Run:
    """What one run directory holds, as the report needs it."""

    path: Path
    name: str
    status: str  # "finished" or "failed" (no summary.json: killed, crashed, or still running)
    reason: str = ""
    choices: dict[str, str] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    quality: dict[tuple[str, int], dict] = field(default_factory=dict)  # (sampler, steps) -> metrics
    grids: dict[str, Path] = field(default_factory=dict)  # "ddim-50" -> final grid


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Every run directory (one holding .hydra/config.yaml) at or under `paths`, in job order."""
    found = []
    for path in map(Path, paths):
        if not path.exists():
            raise ConfigError(f"{path}: no such run or multirun directory")
        found += [p.parent.parent for p in sorted(path.glob("**/.hydra/config.yaml"))]
    runs = list(dict.fromkeys(found))
    if not runs:
        raise ConfigError(f"{', '.join(map(str, paths))}: no run directories (folders with .hydra/config.yaml)")

    def job_order(p: Path):
        number = re.match(r"(\d+)-", p.name)
        return (str(p.parent), int(number.group(1)) if number else -1, p.name)

    return sorted(runs, key=job_order)


def read_choices(run_dir: Path) -> dict[str, str]:
    """The config groups' choices, T, and every plain command-line override (by its last key)."""
    hydra_cfg = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
    choices = {g: str(hydra_cfg.runtime.choices.get(g)) for g in CHOICE_GROUPS if hydra_cfg.runtime.choices.get(g)}
    choices["T"] = str(OmegaConf.load(run_dir / ".hydra" / "config.yaml").get("T"))
    for override in hydra_cfg.overrides.task:
        key = override_key(override)
        if key not in CONFIG_GROUPS and key != "T":
            name, _, value = short_override(override).partition("=")
            choices[name] = value or "removed"
    return choices


def read_metrics(run_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train loss per logged step, val loss per validation) from csv/metrics.csv."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return [], []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    series = lambda key: [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]  # noqa: E731
    return series("train/loss_step"), series("val/loss")


def read_quality(run_dir: Path, summary: dict) -> dict[tuple[str, int], dict]:
    """Quality per (sampler, steps): the end-of-training evaluation, then evaluate.py's (newest last wins)."""
    rows = list(summary.get("quality", {}).get("results", []))
    for eval_json in sorted(run_dir.glob("eval*/eval.json"), key=lambda p: p.stat().st_mtime):
        rows += json.loads(eval_json.read_text()).get("results", [])
    return {(r["sampler"], int(r["steps"])): r for r in rows}


def display_name(run_dir: Path) -> str:
    """`#3` for job 3 of a multirun (its choices have columns of their own), else the folder's name."""
    number = re.match(r"(\d+)-", run_dir.name)
    return f"#{number.group(1)}" if number and (run_dir.parent / "multirun.yaml").exists() else run_dir.name


def read_run(run_dir: Path) -> Run:
    run = Run(path=run_dir, name=display_name(run_dir), status="finished")
    try:
        run.choices = read_choices(run_dir)
    except Exception as err:  # an unreadable config: still listed, as failed
        run.status, run.reason = "failed", f"unreadable .hydra config ({type(err).__name__})"
        return run
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        run.summary = json.loads(summary_path.read_text())
    else:
        run.status, run.reason = "failed", "no summary.json: killed, crashed or still running"
        errors = [line for line in _read_text(run_dir / "train.log").splitlines() if "Error" in line]
        if errors:
            run.reason += f"; last error: {errors[-1].strip()[:200]}"
    run.train_loss, run.val_loss = read_metrics(run_dir)
    run.quality = read_quality(run_dir, run.summary)
    full_chain = f"ddpm-{run.choices.get('T')}"
    for png in sorted((run_dir / "samples").glob("final_*.png")):
        label = png.stem.removeprefix("final_")
        if label != "compare":
            run.grids["ddpm-T" if label == full_chain else label] = png  # one column across runs of any T
    return run


def _read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def differing_choices(runs: list[Run]) -> list[str]:
    """The choice keys whose values differ between runs (all of dataset, schedule, T, model for one run)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.choices))
    differing = [k for k in keys if len({r.choices.get(k) for r in runs}) > 1]
    return differing or [k for k in ("dataset", "schedule", "T", "model") if k in keys]


def table(runs: list[Run]) -> tuple[list[str], list[list]]:
    """Column names and one row of values per run (None where a run has no value)."""
    choices = differing_choices(runs)
    pairs = sorted({pair for r in runs for pair in r.quality}, key=lambda p: (p[0], p[1]))
    columns = ["run", "status", *choices, "train loss", "val loss"]
    columns += [f"FID {s}@{k}" for s, k in pairs] + [f"KID {s}@{k}" for s, k in pairs] + ["train min", "images/s"]
    rows = []
    for r in runs:
        s = r.summary
        train_min = s["train_seconds"] / 60 if s.get("train_seconds") else None
        rows.append([r.name, r.status, *(r.choices.get(c) for c in choices), s.get("final_train_loss"),
                     s.get("final_val_loss"), *(r.quality.get(p, {}).get("fid") for p in pairs),
                     *(r.quality.get(p, {}).get("kid_mean") for p in pairs), train_min,
                     s.get("train_images_per_second")])
    return columns, rows


def best_in_columns(columns: list[str], rows: list[list]) -> set[tuple[int, int]]:
    """(row, column) of the best number in each numeric column: lowest loss, FID, KID, time; most images/s."""
    best = set()
    for j, name in enumerate(columns):
        values = [(row[j], i) for i, row in enumerate(rows) if isinstance(row[j], (int, float))]
        if len(values) > 1:
            lower = name.startswith(LOWER_IS_BETTER)
            best.add(((min if lower else max)(values)[1], j))
    return best


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def png_data(fig_or_path) -> str:
    """A data: URI of a PNG, from a matplotlib Figure or a file."""
    if isinstance(fig_or_path, Path):
        data = fig_or_path.read_bytes()
    else:
        buffer = io.BytesIO()
        fig_or_path.savefig(buffer, format="png")
        data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing mean over `window` points."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def styles(runs: list[Run]):
    """Per run (colour, line style): colour by the first differing choice, style by the second."""
    choices = differing_choices(runs) + [None, None]
    colour_by, style_by = choices[0], choices[1]
    colour_values = list(dict.fromkeys(r.choices.get(colour_by) for r in runs))
    style_values = list(dict.fromkeys(r.choices.get(style_by) for r in runs))
    palette = [f"C{i}" for i in range(10)]
    dashes = ["-", "--", ":", "-."]
    return {r.name: (palette[colour_values.index(r.choices.get(colour_by)) % 10],
                     dashes[style_values.index(r.choices.get(style_by)) % 4]) for r in runs}


def label(run: Run, runs: list[Run]) -> str:
    return ", ".join(f"{run.choices.get(c)}" for c in differing_choices(runs)) or run.name


def loss_figure(runs: list[Run]):
    fig = figure(11, 4)
    train_ax, val_ax = fig.subplots(1, 2)
    look = styles(runs)
    for r in runs:
        colour, dash = look[r.name]
        if r.train_loss:
            steps, losses = zip(*r.train_loss)
            train_ax.plot(steps, smooth(list(losses), max(1, len(losses) // 50)), color=colour, ls=dash,
                          label=label(r, runs))
        if r.val_loss:
            val_ax.plot(*zip(*r.val_loss), color=colour, ls=dash, marker="o", ms=3, label=label(r, runs))
    train_ax.set(title="training loss (smoothed)", xlabel="optimizer step", ylabel="ε-MSE")
    val_ax.set(title="validation loss (EMA weights, fixed t and noise)", xlabel="optimizer step")
    for ax in (train_ax, val_ax):
        finish(ax)
    return fig


def finish(ax) -> None:
    """Log scale where the values span more than a factor of 3, and a legend where there are lines."""
    values = [y for line in ax.lines for y in line.get_ydata() if y > 0]
    if values and max(values) > 3 * min(values):
        ax.set_yscale("log")
    if ax.lines:
        ax.legend(fontsize=7)


def bucket_figure(runs: list[Run]):
    fig = figure(6, 4)
    ax = fig.subplots()
    look = styles(runs)
    for r in runs:
        buckets = r.summary.get("val_loss_by_t_bucket", {})
        if buckets:
            keys = sorted(buckets, key=lambda k: int(k[1:]))
            ax.plot([int(k[1:]) for k in keys], [buckets[k] for k in keys], color=look[r.name][0],
                    ls=look[r.name][1], marker="o", ms=3, label=label(r, runs))
    ax.set(title="final validation loss by t bucket", xlabel="bucket (tenths of T, small t first)", ylabel="ε-MSE")
    finish(ax)
    return fig


def fid_figure(runs: list[Run]):
    fig = figure(6, 4)
    ax = fig.subplots()
    look = styles(runs)
    markers = {}
    for r in runs:
        for sampler in sorted({s for s, _ in r.quality}):
            points = sorted((k, q["fid"]) for (s, k), q in r.quality.items() if s == sampler)
            marker = markers.setdefault(sampler, "os^vD"[len(markers) % 5])
            ax.plot(*zip(*points), color=look[r.name][0], ls=look[r.name][1], marker=marker,
                    label=f"{label(r, runs)} · {sampler}")
    ax.set(title="FID against sampling steps (data set's own feature space)", xlabel="sampling steps",
           ylabel="FID", xscale="log")
    finish(ax)
    return fig


def grid_order(label_: str) -> tuple[float, str]:
    """Step counts ascending, the full chain (ddpm-T) last."""
    sampler, _, steps = label_.rpartition("-")
    return (int(steps) if steps.isdigit() else math.inf, sampler)


SCRIPT = """
document.querySelectorAll('table.runs th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.order !== 'asc';
  th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.order);
  th.dataset.order = asc ? 'asc' : 'desc';
  const key = row => { const c = row.cells[col]; return c.dataset.v === undefined ? c.textContent : c.dataset.v; };
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    if (x === '' || y === '') return (x === '') - (y === '');
    const d = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
    return asc ? d : -d;
  });
  rows.forEach(r => body.appendChild(r));
}));
window.addEventListener('load', () => {
  const broken = Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.dataset.brokenImages = String(broken);
  document.body.dataset.ready = '1';
});
"""

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 24px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f1f3f5; cursor: pointer; user-select: none; }
th[data-order=asc]::after { content: " ▲"; } th[data-order=desc]::after { content: " ▼"; }
td.text { text-align: left; } td.best { background: #d3f9d8; font-weight: 600; }
tr.failed td { color: #c92a2a; }
.scroll { overflow-x: auto; } .charts { display: flex; flex-wrap: wrap; gap: 12px; } img { image-rendering: pixelated; } .grids img { width: 180px; } .grids td { text-align: center; }
"""


def render_html(runs: list[Run], title: str) -> str:
    columns, rows = table(runs)
    best = best_in_columns(columns, rows)
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for i, (run, row) in enumerate(zip(runs, rows)):
        cells = []
        for j, value in enumerate(row):
            classes = ["best"] if (i, j) in best else []
            if not isinstance(value, (int, float)):
                classes.append("text")
            sort_key = f' data-v="{value}"' if isinstance(value, (int, float)) else ""
            cells.append(f'<td class="{" ".join(classes)}"{sort_key}>{esc(fmt(value))}</td>')
        body.append(f'<tr class="{run.status}" title="{esc(str(run.path))}">{"".join(cells)}</tr>')
    failed = [r for r in runs if r.status != "finished"]
    failed_html = ("<h2>Failed or unfinished runs</h2><ul>" + "".join(
        f"<li><code>{esc(str(r.path))}</code>: {esc(r.reason)}</li>" for r in failed) + "</ul>") if failed else ""
    labels = sorted({g for r in runs for g in r.grids}, key=grid_order)
    grid_rows = "".join(
        f"<tr><td class=text>{esc(r.name)}</td>" + "".join(
            f'<td><img alt="{esc(g)}" src="{png_data(r.grids[g])}"></td>' if g in r.grids else "<td></td>"
            for g in labels) + "</tr>" for r in runs if r.grids)
    charts = "".join(f'<img alt="{name}" src="{png_data(draw(runs))}">' for name, draw in (
        ("loss curves", loss_figure), ("t-bucket losses", bucket_figure), ("FID against steps", fid_figure)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{esc(title)}</h1>
<p>{len(runs)} runs, {len(failed)} failed or unfinished. Click a column to sort; the best value of each column is
green. FID and KID are measured in the feature space of a classifier trained on the data set (not
Inception-v3), at the named sampler and step count; KID is the mean over subsets.</p>
<div class="scroll"><table class="runs"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>
{failed_html}
<h2>Curves</h2><div class="charts">{charts}</div>
<h2>Final sample grids (EMA weights, same noise for every step count)</h2>
<div class="scroll"><table class="grids"><thead><tr><th>run</th>{''.join(f'<th>{esc(g)}</th>' for g in labels)}</tr></thead>
<tbody>{grid_rows}</tbody></table></div>
<script>{SCRIPT}</script>
</body></html>
"""


def render_markdown(runs: list[Run], title: str, out_dir: Path) -> str:
    columns, rows = table(runs)
    best = best_in_columns(columns, rows)
    lines = [f"# {title}", "", f"{len(runs)} runs; best value per column in **bold**. Charts and grids: "
             "report.html.", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for i, row in enumerate(rows):
        lines.append("| " + " | ".join(f"**{fmt(v)}**" if (i, j) in best else fmt(v) for j, v in enumerate(row)) + " |")
    failed = [r for r in runs if r.status != "finished"]
    if failed:
        lines += ["", "## Failed or unfinished runs", ""] + [f"- `{r.path}`: {r.reason}" for r in failed]
    grids = [(r, g) for r in runs for g in sorted(r.grids, key=grid_order)]
    if grids:
        lines += ["", "## Final sample grids", ""]
        for r, g in grids:
            lines.append(f"- {r.name} · {g}: ![{g}]({_relative(r.grids[g], out_dir)})")
    return "\n".join(lines) + "\n"


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), start.resolve())


def wandb_runs(project: str) -> list[Run]:
    """Runs of a W&B project (`entity/project`), from their summaries and logged losses; needs the network."""
    try:
        import wandb

        api_runs = list(wandb.Api(timeout=20).runs(project))
    except Exception as err:
        raise ConfigError(f"--wandb {project}: cannot read the project ({str(err).splitlines()[0][:200]})") from None
    runs = []
    for r in api_runs:
        summary = {k: v for k, v in r.summary.items() if not k.startswith("_")}
        history = list(r.scan_history(keys=["trainer/global_step", "train/loss_step"]))
        run = Run(path=Path(r.url), name=r.name, status="finished" if r.state == "finished" else "failed",
                  reason=f"W&B state {r.state}", summary=summary,
                  choices={k: str(v) for k, v in (("T", r.config.get("T")), ("dataset", r.config.get("dataset", {})
                                                  .get("name"))) if v is not None} | {t: "yes" for t in r.tags},
                  train_loss=[(int(h["trainer/global_step"]), float(h["train/loss_step"])) for h in history])
        run.quality = {(q["sampler"], int(q["steps"])): q for q in summary.get("quality", {}).get("results", [])}
        runs.append(run)
    return runs


def write_report(paths: list[str | Path], out: str | Path = "report.html", wandb_project: str | None = None,
                 title: str | None = None) -> tuple[Path, Path]:
    """Write `out` (HTML) and report.md beside it; returns both paths."""
    runs = [read_run(p) for p in find_runs(paths)] if paths else []
    if wandb_project:
        runs += wandb_runs(wandb_project)
    if not runs:
        raise ConfigError("no runs: give run or multirun directories, or --wandb entity/project")
    out = fresh_file(Path(out), also=".md")
    title = title or f"diffusion-lab report: {', '.join(str(p) for p in paths) or wandb_project}"
    html = render_html(runs, title)
    md = render_markdown(runs, title, out.parent)
    return (write_atomic(out, lambda f: f.write(html)),
            write_atomic(out.with_suffix(".md"), lambda f: f.write(md)))


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad command line reported as one `error:` line that lists the allowed options."""

    def error(self, message: str) -> None:
        options = ", ".join("/".join(a.option_strings) for a in self._actions if a.option_strings)
        print(f"error: {message}; allowed options are {options}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    from diffusion_lab.cli import one_line_errors

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="a multirun directory, or run directories")
    parser.add_argument("-o", "--out", default="report.html",
                        help="the HTML file, with its .md beside it; if either exists, report-1.html and so on")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also pull the runs of a W&B project (online)")
    parser.add_argument("--title")
    args = parser.parse_args(argv)
    with one_line_errors():
        html_path, md_path = write_report(args.paths, args.out, args.wandb, args.title)
    print(f"{html_path}\n{md_path}")


if __name__ == "__main__":
    sys.exit(main())
