"""Tables and figures of the sampling-step study, from the eval.json files that run.sh leaves in results/.

  python summarize.py best-spacing <pilot eval.json> <solver>   the pilot's lowest-FID step schedule of a solver
  python summarize.py best-solver <results/MODEL>               "<solver> <spacing>": the higher-order setting of
                                                                lowest mean FID at NFE 10, 20 and 50
  python summarize.py report <experiments/step_study>           tables.md and the figures

Settings of one model are paired image by image across eval.json files: image i starts from the noise (seed, i)
in each, and the bootstrap's replicate k resamples the same images in each (`uncertainty.bootstrap`), so the
kept replicates give paired intervals for any two settings with the same n, real set and seed.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from matplotlib.ticker import NullFormatter

from diffusion_lab.metrics.measure import interval, number
from diffusion_lab.metrics.uncertainty import paired_difference
from diffusion_lab.plotting import figure, save

BUDGETS = [5, 10, 20, 50, 100, 200]
OTHER_BUDGETS = [10, 20, 50, 100, 200]
FIRST_ORDER = ("ddpm", "ddim")  # the rest of the zoo is "higher order" (DPM-Solver++ 2M SDE included)
ARMS = {"linear": "linear β, T = 1000 (the headline)", "cosine": "cosine ᾱ, T = 1000",
        "linear_T200": "linear β, T = 200", "learned": "linear β, T = 1000, learned Σ (L_hybrid)"}
DATASETS = ("mnist", "fashion_mnist")
# The variance ablation's respaced DDPM with σ² pinned whatever the network learned (conf/sampler/ddpm_fixed_*.yaml)
PINNED = {"ddpm_fixed_small": "β̃' (pinned)", "ddpm_fixed_large": "β' (pinned)"}
FID_TICKS = (2, 5, 10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 500, 1000, 2000)  # plain labels on log axes


@dataclass(frozen=True)
class Row:
    """One measured setting: a result of an eval.json, where it came from, and how its bootstrap was drawn."""

    model: str
    folder: str  # under results/<model>/: nll, pilot, ddpm-full, dpm_solver/nfe10 (the grid), n1000/ddim
    result: dict
    pairing: tuple  # (n, real_n, resamples, seed): rows that agree on it pair image by image

    @property
    def solver(self) -> str:
        return self.result["sampler"].split("+")[0]

    @property
    def setting(self) -> str:
        return f"{self.solver}+{self.result['spacing']}"

    def __getitem__(self, key):
        return self.result[key]


def load(results: Path) -> dict[str, list[Row]]:
    """{model: its rows} from every results/<model>/**/eval.json."""
    rows = {}
    for path in sorted(results.glob("*/**/eval.json")):
        model, folder = path.relative_to(results).parts[0], "/".join(path.relative_to(results).parts[1:-1])
        record = json.loads(path.read_text())
        rows.setdefault(model, [])
        for r in record.get("results", []):
            rows[model].append(Row(model, folder, r, (r["n"], record["real_n"], record.get("resamples"),
                                                      record["seed"])))
    return rows


def nll_of(results: Path, model: str) -> dict | None:
    path = results / model / "nll" / "eval.json"
    return json.loads(path.read_text())["nll"] if path.exists() else None


def paired(row: Row, against: Row, metric: str = "fid") -> dict:
    """{diff, ci, distinguishable} of row − against in `metric`, paired image by image."""
    if row.pairing != against.pairing or "replicates" not in row.result or "replicates" not in against.result:
        raise ValueError(f"{row.model}/{row.folder} and {against.model}/{against.folder} do not pair")
    a, b = row["replicates"][metric], against["replicates"][metric]
    return paired_difference(a["estimate"], a["values"], b["estimate"], b["values"])


def best_spacing(pilot: Path, solver: str) -> str:
    rows = [r for r in json.loads(pilot.read_text())["results"] if r["sampler"].split("+")[0] == solver]
    if not rows:
        sys.exit(f"error: solver={solver}: not in {pilot}")
    return min(rows, key=lambda r: r["fid"])["spacing"]


def budget(row: Row) -> int:
    """The NFE budget a row was drawn for: Heun's budget of 10 buys 5 steps, 9 evaluations."""
    return next((b for b in BUDGETS if b >= row["nfe"]), row["nfe"])


def grid(rows: list[Row], comparison: bool = False) -> dict[str, dict[int, Row]]:
    """{setting: {NFE budget: row}} of the headline grid (folders <solver>/nfe<k>), or with `comparison` of the
    DDPM / DDIM / best-solver comparison that every model has (folders n<images>/<solver>)."""
    table = {}
    for r in rows:
        first, _, rest = r.folder.partition("/")
        in_comparison = first[:1] == "n" and first[1:].isdigit()
        if rest and in_comparison == comparison:
            table.setdefault(r.setting, {})[budget(r)] = r
    return dict(sorted(table.items()))


def comparison(rows: list[Row]) -> dict[str, dict[int, Row]]:
    """The DDPM / DDIM / best-solver comparison of a model, without the variance ablation's pinned DDPM."""
    return {s: by for s, by in grid(rows, comparison=True).items() if s.split("+")[0] not in PINNED}


def models_of(dataset: str, rows: dict[str, list[Row]]) -> list[str]:
    """The data set's models that have results, in ARMS' order."""
    return [f"{dataset}_{arm}" for arm in ARMS if f"{dataset}_{arm}" in rows]


def floor_of(table: dict[str, dict[int, Row]]) -> float | None:
    """The real-data floor at the table's n (every row of it has the same)."""
    return next(iter(next(iter(table.values())).values()))["floor_fid"] if table else None


def n_of(table: dict[str, dict[int, Row]]) -> str:
    return ", ".join(f"{n:,}" for n in sorted({r["n"] for by in table.values() for r in by.values()})) or "-"


def best_solver(model_results: Path) -> str:
    table = grid(load(model_results.parent).get(model_results.name, []))
    means = {s: sum(by[b]["fid"] for b in (10, 20, 50)) / 3 for s, by in table.items()
             if s.split("+")[0] not in FIRST_ORDER and all(b in by for b in (10, 20, 50))}
    if not means:
        sys.exit(f"error: {model_results}: no higher-order solver has NFE 10, 20 and 50 yet: run.sh evaluate "
                 f"{model_results.name} first")
    return " ".join(min(means, key=means.get).split("+"))


def cell(row: Row | None) -> str:
    return "-" if row is None else f"{row['fid']:.1f} {interval(row.result.get('fid_ci'))}"


def delta(d: dict | None) -> str:
    return "-" if d is None else f"{d['diff']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}]{'*' if d['distinguishable'] else ''}"


def full_chain(rows: list[Row]) -> Row | None:
    return next((r for r in rows if r.folder == "ddpm-full"), None)


def within(by: dict[int, Row], reference: Row) -> int | None:
    """The smallest budget from which on the setting is never distinguishably worse than `reference`."""
    found = None
    for b in sorted(by, reverse=True):
        if paired(by[b], reference)["ci"][0] > 0:
            break
        found = b
    return found


def headline_tables(model: str, rows: list[Row]) -> list[str]:
    table, full = grid(rows), full_chain(rows)
    floor = floor_of(table)
    lines = [f"## {model}: every solver at NFE 5-200 (n = {n_of(table)} on the same seeds, 95 % intervals)", "",
             f"FID; the real-data floor at n = {n_of(table)} is {number(floor)}; the full chain (ancestral DDPM, all T steps): "
             f"{cell(full)}" + (f" (n = {full['n']:,})." if full else "."), "",
             "| solver+spacing | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " | within the full chain from |",
             "|---" * (len(BUDGETS) + 2) + "|"]
    for setting, by in table.items():
        reach = within(by, full) if full and full.pairing == next(iter(by.values())).pairing else None
        lines.append(f"| {setting} | " + " | ".join(cell(by.get(b)) + (f" ({by[b]['nfe']})" if b in by and by[b]['nfe'] != b else "")
                                                 for b in BUDGETS) + f" | {reach or '-'} |")
    if full:
        lines += ["", "Paired ΔFID against the full chain (negative: better; * the interval excludes 0):", "",
                  "| solver+spacing | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " |", "|---" * (len(BUDGETS) + 1) + "|"]
        for setting, by in table.items():
            lines.append(f"| {setting} | " + " | ".join(delta(paired(by[b], full)) if b in by else "-" for b in BUDGETS) + " |")
    lines += ["", "Paired ΔFID against the same solver at NFE 200 (its converged value):", "",
              "| solver+spacing | " + " | ".join(f"NFE {b}" for b in BUDGETS[:-1]) + " |", "|---" * len(BUDGETS) + "|"]
    for setting, by in table.items():
        lines.append(f"| {setting} | " + " | ".join(delta(paired(by[b], by[200])) if b in by and 200 in by else "-"
                                                   for b in BUDGETS[:-1]) + " |")
    lines += ["", f"Every row of {model} (KID ×10³; s/1k: seconds of sampling per 1,000 images on this machine):", "",
              "| setting | NFE | steps | FID [95 % CI] | floor | FID∞ | KID [95 % CI] | precision | recall | coverage | s/1k |",
              "|---" * 11 + "|"]
    for setting, by in table.items():
        lines += [every_row(setting, by[b]) for b in sorted(by)]
    if full:
        lines.append(every_row("ddpm (full chain)", full))
    pilot = [r for r in rows if r.folder == "pilot"]
    if pilot:
        spacings = list(dict.fromkeys(r["spacing"] for r in pilot))
        lines += ["", f"Pilot: FID at NFE 10 per step schedule (n = {pilot[0]['n']}); each solver's lowest is its best:", "",
                  "| solver | " + " | ".join(spacings) + " |", "|---" * (len(spacings) + 1) + "|"]
        for solver in dict.fromkeys(r.solver for r in pilot):
            by = {r["spacing"]: r for r in pilot if r.solver == solver}
            lines.append(f"| {solver} | " + " | ".join(cell(by.get(s)) for s in spacings) + " |")
    return lines + [""]


def every_row(setting: str, r: Row) -> str:
    kid = r.result.get("kid_ci")
    return (f"| {setting} | {r['nfe']} | {r['steps']} | {cell(r)} | {number(r.result.get('floor_fid'))} | "
            f"{number(r.result.get('fid_inf'))} | {number(1e3 * r['kid_mean'])} {interval(kid, 1e3)} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['coverage']:.3f} | {r['seconds_per_1k']:.0f} |")


def model_tables(dataset: str, rows: dict[str, list[Row]], results: Path) -> list[str]:
    """The four models of a data set in the DDPM / DDIM / best-solver comparison, paired against the headline,
    and their bounds."""
    models = models_of(dataset, rows)
    headline = comparison(rows.get(f"{dataset}_linear", []))
    lines = [f"## {dataset}: the four models at n = {n_of(headline)} (ΔFID paired against the headline, same seeds)", "",
             "| model | solver+spacing | " + " | ".join(f"NFE {b}" for b in OTHER_BUDGETS) + " |",
             "|---" * (len(OTHER_BUDGETS) + 2) + "|"]
    for model in models:
        for setting, by in comparison(rows[model]).items():
            cells = []
            for b in OTHER_BUDGETS:
                text = cell(by.get(b))
                ref = headline.get(setting, {}).get(b)
                if b in by and ref is not None and not model.endswith("_linear"):
                    text += f"<br>Δ {delta(paired(by[b], ref))}"
                cells.append(text)
            lines.append(f"| {ARMS[model.removeprefix(dataset + '_')]} | {setting} | " + " | ".join(cells) + " |")
    lines += ["", f"The variational bound of {dataset}'s models (bits/dim over all T terms, the first test images, 95 % "
              "intervals over images):", "", "| model | n | bound | prior L_T | decoder L_0 | KL terms |", "|---" * 6 + "|"]
    for model in models:
        nll = nll_of(results, model)
        if nll:
            t = nll["terms"]
            lines.append(f"| {ARMS[model.removeprefix(dataset + '_')]} | {nll['n']} | {nll['bpd']:.3f} "
                         f"{interval(nll['bpd_ci'])} | {t['prior']['bpd']:.2g} | {t['decoder']['bpd']:.3f} | {t['kl']['bpd']:.3f} |")
    return lines + [""]


def variance_table(dataset: str, rows: dict[str, list[Row]]) -> list[str]:
    """Respaced DDPM with each model's own σ² (learned, or β̃' where fixed) against σ² pinned to β̃' and β' on the
    same network and seeds, each pinned row's ΔFID paired against the own σ²."""
    lines = []
    for model in models_of(dataset, rows):
        table = grid(rows[model], comparison=True)
        own = next((by for s, by in table.items() if s.split("+")[0] == "ddpm"), None)
        pinned = {s: by for s, by in table.items() if s.split("+")[0] in PINNED}
        if own is None or not pinned:
            continue
        budgets = sorted({b for by in pinned.values() for b in by})
        if not lines:
            lines = [f"## {dataset}: respaced DDPM's reverse variance (n = {n_of(pinned)}; ΔFID paired against the same "
                     "network's own σ², same seeds)", "",
                     "| model | σ² | " + " | ".join(f"NFE {b}" for b in budgets) + " |", "|---" * (len(budgets) + 2) + "|"]
        arm = ARMS[model.removeprefix(dataset + "_")]
        own_variance = "learned" if model.endswith("_learned") else "β̃' (fixed)"
        lines.append(f"| {arm} | {own_variance}, its own | "
                     + " | ".join(cell(own.get(b)) for b in budgets) + " |")
        for setting, by in pinned.items():
            lines.append(f"| {arm} | {PINNED[setting.split('+')[0]]} | " + " | ".join(
                "-" if b not in by else cell(by[b]) + (f"<br>Δ {delta(paired(by[b], own[b]))}" if b in own else "")
                for b in budgets) + " |")
    return lines + [""] if lines else []


def grid_table(model: str, results: Path) -> list[str]:
    """The comparison's sample grids (run.sh's grids/<solver>+<spacing>-nfe<k>/grid.png), a row per setting and a
    column per NFE, linked from tables.md beside results/."""
    cells: dict[str, dict[int, str]] = {}
    for png in sorted((results / model / "grids").glob("*-nfe*/grid.png")):
        setting, nfe = png.parent.name.rsplit("-nfe", 1)
        cells.setdefault(setting, {})[int(nfe)] = png.relative_to(results.parent).as_posix()
    if not cells:
        return []
    budgets = sorted({b for by in cells.values() for b in by})
    lines = [f"Samples of {model}: images 0-63 of the comparison (the same starting noise in every cell):", "",
             "| solver+spacing | " + " | ".join(f"NFE {b}" for b in budgets) + " |", "|---" * (len(budgets) + 1) + "|"]
    for setting, by in cells.items():
        lines.append(f"| {setting} | " + " | ".join(f'<img src="{by[b]}" width="160">' if b in by else "-"
                                                   for b in budgets) + " |")
    return lines + [""]


def band(ax, xs, rows: list[Row], label: str, **style) -> None:
    ys = [r["fid"] for r in rows]
    line, = ax.plot(xs, ys, marker="o", markersize=3, label=label, **style)
    cis = [r.result.get("fid_ci") for r in rows]
    if all(cis):
        ax.fill_between(xs, [c[0] for c in cis], [c[1] for c in cis], color=line.get_color(), alpha=0.12, linewidth=0)


def fid_axis(ax, bottom: float, top: float) -> None:
    """A log FID axis from `bottom` to `top` with plain tick labels."""
    ticks = [t for t in FID_TICKS if bottom <= t <= top]
    ax.set(yscale="log", ylim=(bottom, top))
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())


def headline_figures(model: str, rows: list[Row], out: Path) -> None:
    """FID against NFE and against seconds: each solver's best schedule on the left, Karras's on the right, one
    colour per solver; the axis stops at 4× the full chain, and what lies above is named under it."""
    table, full = grid(rows), full_chain(rows)
    if not table:
        return
    colours = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(setting.split("+")[0] for setting in table))}
    fids = [r["fid"] for by in table.values() for r in by.values()]
    top = 4 * full["fid"] if full else max(fids)
    bottom = 0.9 * min(fids + ([full["fid_ci"][0]] if full else []))
    off_scale = [f"{setting} at NFE {b}: {by[b]['fid']:,.0f}" for setting, by in table.items() for b in sorted(by)
                 if by[b]["fid"] > top]
    for axis, key, label in (("nfe", "nfe", "network evaluations per image (NFE)"),
                             ("seconds", "seconds_per_1k", "seconds per 1,000 images, this machine")):
        fig = figure(10, 4.4)
        panels = fig.subplots(1, 2, sharey=True)
        for ax, karras in zip(panels, (False, True)):
            for setting, by in table.items():
                if setting.endswith("+karras") == karras:
                    chosen = [by[b] for b in sorted(by)]
                    band(ax, [r[key] for r in chosen], chosen, setting, color=colours[setting.split("+")[0]])
            if full:
                ax.axhline(full["fid"], color="black", linewidth=1, label=f"full chain ({full['steps']} steps)")
                ax.axhspan(*full["fid_ci"], color="black", alpha=0.08)
            ax.set(xscale="log", xlabel=label,
                   title="Karras's schedule (ODE solvers)" if karras else "each solver's best schedule (pilot)")
            fid_axis(ax, bottom, top)
            ax.legend(fontsize=6)
        panels[0].set_ylabel("FID (classifier features)")
        fig.suptitle(f"{model}: FID against {axis} (n = {n_of(table)}, 95 % bands; real data {number(floor_of(table))})")
        if off_scale:
            fig.supxlabel("above the axis: " + "; ".join(off_scale), fontsize=6)
        save(fig, out / f"fid_vs_{axis}_{model}.png")


def model_figure(dataset: str, rows: dict[str, list[Row]], out: Path) -> None:
    models = models_of(dataset, rows)
    settings = list(dict.fromkeys(s for m in models for s in comparison(rows[m])))
    if not settings:
        return
    fig = figure(4 * len(settings), 3.6)
    chosen_rows = [r for m in models for by in comparison(rows[m]).values() for r in by.values()]
    bottom = 0.9 * min(r.result.get("fid_ci", [r["fid"]])[0] for r in chosen_rows)
    top = 1.1 * max(r.result.get("fid_ci", [0, r["fid"]])[1] for r in chosen_rows)
    for ax, setting in zip(fig.subplots(1, len(settings), squeeze=False, sharey=True)[0], settings):
        for model in models:
            by = comparison(rows[model]).get(setting, {})
            chosen = [by[b] for b in sorted(by)]
            if chosen:
                band(ax, [r["nfe"] for r in chosen], chosen, ARMS[model.removeprefix(dataset + "_")])
        ax.set(xscale="log", xlabel="NFE", title=setting)
        fid_axis(ax, bottom, top)
    ax.legend(fontsize=6)
    fig.suptitle(f"{dataset}: schedule, T and learned variances (FID, 95 % bands)")
    save(fig, out / f"models_{dataset}.png")


def cpu_seconds(results: Path, models: Path) -> tuple[float, float]:
    """(seconds of every evaluate.py result, seconds of training) spent, as the files record them."""
    evaluation = sum(r.get("seconds", 0) for p in results.glob("*/**/eval.json")
                     for r in json.loads(p.read_text()).get("results", []))
    training = sum(json.loads(p.read_text()).get("train_seconds", 0) or 0 for p in models.glob("*/summary.json"))
    return evaluation, training


def report(here: Path) -> None:
    results = here / "results"
    rows = load(results)
    lines = ["# The sampling-step study: tables", "",
             f"Written by `python {here}/summarize.py report {here}` from the eval.json files under results/.", ""]
    for dataset in DATASETS:
        headline = f"{dataset}_linear"
        if headline in rows:
            lines += headline_tables(headline, rows[headline])
            headline_figures(headline, rows[headline], here)
        if any(m.startswith(dataset + "_") for m in rows):
            lines += model_tables(dataset, rows, results)
            lines += variance_table(dataset, rows)
            model_figure(dataset, rows, here)
        for model in models_of(dataset, rows):
            lines += grid_table(model, results)
    evaluation, training = cpu_seconds(results, here / "models")
    lines += [f"CPU time recorded: {evaluation / 3600:.2f} h of sampling and scoring (the `seconds` of every result), "
              f"{training / 3600:.2f} h of training.", ""]
    (here / "tables.md").write_text("\n".join(lines))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "best-spacing":
        print(best_spacing(Path(args[0]), args[1]))
    elif command == "best-solver":
        print(best_solver(Path(args[0])))
    elif command == "report":
        report(Path(args[0]))
    else:
        sys.exit(f"error: command={command}; allowed: best-spacing, best-solver, report")
