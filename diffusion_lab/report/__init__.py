"""A local report of many runs, from their run directories alone: one self-contained HTML file (tables, charts
and sample grids inline; no network) and a report.md beside it.

    python report.py <multirun dir | run dirs...> [-o report.html] [--wandb entity/project]

Modules: runs (read run directories), wandb_runs (read a W&B project), tables (the runs table), charts
(matplotlib figures), render (HTML from templates/report.html.j2, and markdown), cli (the command line).
"""

from diffusion_lab.report.cli import main, write_report
from diffusion_lab.report.runs import Run, find_runs, read_run

__all__ = ["Run", "find_runs", "main", "read_run", "write_report"]
