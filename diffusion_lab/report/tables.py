"""The runs table: which choices get columns, one row of values per run, the best value per column."""

from dataclasses import dataclass

from diffusion_lab.report.runs import Run

LOWER_IS_BETTER = ("train loss", "val loss", "FID", "KID", "train min")  # column-name prefixes


@dataclass(frozen=True)
class Estimate:
    """A quality number with its 95 % interval (None where none was computed)."""

    value: float
    ci: tuple[float, float] | None = None


def estimate(result: dict | None, key: str) -> Estimate | None:
    """`key` of a quality result with its interval (`fid_ci`; `kid_ci` for `kid_mean`), or None."""
    if not result or result.get(key) is None:
        return None
    ci = result.get(f"{key.removesuffix('_mean')}_ci")
    return Estimate(result[key], tuple(ci) if ci else None)


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
    columns += [f"FID {s}@{k}" for s, k in pairs] + [f"KID {s}@{k}" for s, k in pairs]
    columns += ["quality n", "FID floor", "train min", "images/s"]
    rows = []
    for r in runs:
        s = r.summary
        train_min = s["train_seconds"] / 60 if s.get("train_seconds") else None
        results = [r.quality[p] for p in pairs if p in r.quality]
        ns = sorted({q["n"] for q in results if "n" in q})
        floors = sorted({q["floor_fid"] for q in results if q.get("floor_fid") is not None})
        rows.append([r.name, r.status, *(r.choices.get(c) for c in choices), s.get("final_train_loss"),
                     s.get("final_val_loss"), *(estimate(r.quality.get(p), "fid") for p in pairs),
                     *(estimate(r.quality.get(p), "kid_mean") for p in pairs),
                     ", ".join(map(str, ns)) or None, floors[0] if len(floors) == 1 else None, train_min,
                     s.get("train_images_per_second")])
    return columns, rows


def best_in_columns(columns: list[str], rows: list[list]) -> set[tuple[int, int]]:
    """(row, column) of the best number in each numeric column: lowest loss, FID, KID, time; most images/s. A
    number with an interval is best only where its interval lies clear of every other's in that column: a
    difference inside the intervals is no finding."""
    best = set()
    for j, name in enumerate(columns):
        values = [(sort_value(row[j]), i) for i, row in enumerate(rows) if sort_value(row[j]) is not None]
        if len(values) > 1:
            lower = name.startswith(LOWER_IS_BETTER)
            winner = (min if lower else max)(values)[1]
            if clear_of_others(rows[winner][j], [row[j] for i, row in enumerate(rows) if i != winner], lower):
                best.add((winner, j))
    return best


def clear_of_others(cell, others: list, lower: bool) -> bool:
    """Whether `cell`'s interval lies wholly on the better side of every other cell's (true for plain numbers)."""
    if not isinstance(cell, Estimate) or cell.ci is None:
        return True
    rivals = [o.ci for o in others if isinstance(o, Estimate) and o.ci is not None]
    return all(cell.ci[1] < ci[0] if lower else cell.ci[0] > ci[1] for ci in rivals)


def sort_value(value) -> float | None:
    """A cell's number for sorting and ranking: its value, an estimate's point value, None for text."""
    if isinstance(value, Estimate):
        return value.value
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def fmt(value) -> str:
    """A cell's text: blank for no value, 4 significant digits for a float (no decimals from 10⁴ on), an
    estimate with its interval."""
    if value is None:
        return ""
    if isinstance(value, Estimate):
        return fmt(value.value) + (f" [{fmt(value.ci[0])}, {fmt(value.ci[1])}]" if value.ci else "")
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)
