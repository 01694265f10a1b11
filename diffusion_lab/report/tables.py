"""The runs table: which choices get columns, one row of values per run, the best value per column."""

from diffusion_lab.report.runs import Run

LOWER_IS_BETTER = ("train loss", "val loss", "FID", "KID", "train min")  # column-name prefixes


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
    """A cell's text: blank for no value, 4 significant digits for a float (no decimals from 10⁴ on)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)
