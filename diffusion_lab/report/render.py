"""The report as text: the HTML page (from templates/report.html.j2, autoescaped) and report.md."""

import os
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from diffusion_lab.report.charts import CHARTS, png_data
from diffusion_lab.report.runs import Run, grid_order
from diffusion_lab.report.tables import best_in_columns, fmt, sort_value, table

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                        undefined=StrictUndefined, keep_trailing_newline=True)


def table_cells(row: list, i: int, best: set[tuple[int, int]]) -> list[dict]:
    """Row `i`'s cells for the HTML table: CSS classes (best, text), numeric sort key, shown text."""
    cells = []
    for j, value in enumerate(row):
        number = sort_value(value)
        classes = (["best"] if (i, j) in best else []) + ([] if number is not None else ["text"])
        cells.append({"classes": " ".join(classes), "sort_key": number, "text": fmt(value)})
    return cells


def render_html(runs: list[Run], title: str) -> str:
    """The self-contained HTML page: sortable runs table, failed runs, charts and sample grids inline."""
    columns, rows = table(runs)
    best = best_in_columns(columns, rows)
    grid_labels = sorted({g for r in runs for g in r.grids}, key=grid_order)
    return TEMPLATES.get_template("report.html.j2").render(
        title=title,
        n_runs=len(runs),
        columns=columns,
        rows=[{"run": run, "cells": table_cells(row, i, best)} for i, (run, row) in enumerate(zip(runs, rows))],
        failed=[r for r in runs if r.status != "finished"],
        grid_labels=grid_labels,
        grid_rows=[{"name": r.name, "grids": {g: png_data(path) for g, path in r.grids.items()}}
                   for r in runs if r.grids],
        charts=[{"name": name, "src": png_data(draw(runs))} for name, draw in CHARTS],
    )


def render_markdown(runs: list[Run], title: str, out_dir: Path) -> str:
    """report.md: the runs table (best values in bold), failed runs, and links to the grids from `out_dir`."""
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
