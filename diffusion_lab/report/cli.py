"""The command line of report.py, and write_report: read the runs, write report.html and report.md."""

import argparse
import sys
from pathlib import Path

from diffusion_lab.errors import ConfigError, one_line_errors
from diffusion_lab.files import fresh_file, write_atomic
from diffusion_lab.report.render import render_html, render_markdown
from diffusion_lab.report.runs import find_runs, read_run
from diffusion_lab.report.wandb_runs import wandb_runs

DESCRIPTION = ("A local report of many runs, from their run directories alone: one self-contained HTML file "
               "(tables, charts and sample grids inline; no network) and a report.md beside it.")


def write_report(paths: list[str | Path], out: str | Path = "report.html", wandb_project: str | None = None,
                 title: str | None = None) -> tuple[Path, Path]:
    """Write `out` (HTML) and report.md beside it; returns both paths."""
    runs = [read_run(p) for p in find_runs(paths)] if paths else []
    if wandb_project:
        runs += wandb_runs(wandb_project)
    if not runs:
        raise ConfigError("no runs: give run or multirun directories, or --wandb entity/project")
    out = fresh_file(Path(out), sibling_suffix=".md")
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
    """`python report.py <multirun dir | run dirs...> [-o report.html] [--wandb entity/project] [--title T]`."""
    parser = OneLineParser(description=DESCRIPTION)
    parser.add_argument("paths", nargs="*", help="a multirun directory, or run directories")
    parser.add_argument("-o", "--out", default="report.html",
                        help="the HTML file, with its .md beside it; if either exists, report-1.html and so on")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also pull the runs of a W&B project (online)")
    parser.add_argument("--title")
    args = parser.parse_args(argv)
    with one_line_errors():
        html_path, md_path = write_report(args.paths, args.out, args.wandb, args.title)
    print(f"{html_path}\n{md_path}")
