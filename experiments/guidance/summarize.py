"""The guidance study's tables and figures from its run directories.

    python experiments/guidance/summarize.py <runs dir> <out dir>

Writes tables.md (training; per model, each sampler's FID, precision, recall, coverage, class accuracy and
seconds per 1,000 images against the guidance scale w, then the accuracy for each class asked for),
guidance.png (FID and class accuracy against w) and per_class.png (the accuracy of each digit against w).
Each run's newest evaluation (eval/, eval-1/, …) is read, and <out dir>/references.json (references.py) for
the real images' row and reference lines.
"""

import csv
import json
import sys
from pathlib import Path

from diffusion_lab.plotting import figure, save


def read_run(path: Path) -> dict:
    evaluations = sorted(path.glob("eval*/eval.json"), key=lambda p: p.stat().st_mtime)
    with open(path / "csv" / "metrics.csv") as f:
        measured = [row for row in csv.DictReader(f) if row.get("val/fid@50")]
    return {"name": path.name, "summary": json.loads((path / "summary.json").read_text()),
            "last_quality": measured[-1] if measured else None,  # val/fid@50 during training, its last value
            "results": json.loads(evaluations[-1].read_text())["results"]}


def samplers(run: dict) -> list[str]:
    return list(dict.fromkeys(r["sampler"] for r in run["results"]))


def rows_of(run: dict, sampler: str) -> list[dict]:
    return sorted((r for r in run["results"] if r["sampler"] == sampler), key=lambda r: r["guidance_scale"])


def training_table(runs: list[dict]) -> list[str]:
    lines = ["| model | optimizer steps | train minutes | images/s | final train loss | final val loss | "
             "last val/fid@50 (step) | its val/class_accuracy@50 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        s, q = run["summary"], run["last_quality"] or {}
        quality = f"{float(q['val/fid@50']):.1f} ({q['step']}) | {float(q['val/class_accuracy@50']):.3f}" if q else " | "
        lines.append(f"| {run['name']} | {s['optimizer_steps']:,} | {s['train_seconds'] / 60:.1f} | "
                     f"{s['train_images_per_second']:.0f} | {s['final_train_loss']:.4f} | {s['final_val_loss']:.4f} | "
                     f"{quality} |")
    return lines


def quality_table(run: dict, real: dict) -> list[str]:
    lines = ["| sampler | w | FID | precision | recall | coverage | class accuracy | s / 1,000 images |",
             "|---|---:|---:|---:|---:|---:|---:|---:|",
             f"| real images, n = {real['n']} | | {real['fid']:.2f} | {real['precision']:.3f} | {real['recall']:.3f} | "
             f"{real['coverage']:.3f} | {real['classifier_test_accuracy']:.3f} (test set) | |"]
    for sampler in samplers(run):
        for r in rows_of(run, sampler):
            lines.append(f"| {sampler}-{r['steps']} | {r['guidance_scale']:g} | {r['fid']:.2f} | {r['precision']:.3f} | "
                         f"{r['recall']:.3f} | {r['coverage']:.3f} | {r['class_accuracy']:.3f} | "
                         f"{1000 * r['seconds'] / r['n']:.0f} |")
    return lines


def per_class_table(run: dict, sampler: str) -> list[str]:
    lines = ["| w | " + " | ".join(map(str, range(10))) + " |", "|---:" * 11 + "|"]
    for r in rows_of(run, sampler):
        lines.append(f"| {r['guidance_scale']:g} | " + " | ".join(f"{a:.2f}" for a in r["class_accuracy_per_class"])
                     + " |")
    return lines


def lowest_accuracy(runs: list[dict]) -> float:
    """The axis floor for accuracies: a little below the lowest per-class accuracy of any setting."""
    return max(0.0, min(min(r["class_accuracy_per_class"]) for run in runs for r in run["results"]) - 0.05)


def guidance_figure(runs: list[dict], real: dict):
    fig = figure(10, 3.6)
    axes = fig.subplots(1, 2)
    axes[0].axhline(real["fid"], color="gray", lw=1, ls="--", label=f"real images, n = {real['n']}")
    axes[1].axhline(real["classifier_test_accuracy"], color="gray", lw=1, ls="--", label="classifier, test set")
    colours = {}  # one colour per sampler, one line style per model
    for run, style in zip(runs, ("-", "--", ":", "-.")):
        for sampler in samplers(run):
            rows = rows_of(run, sampler)
            ws = [r["guidance_scale"] for r in rows]
            line = {"marker": "o", "ls": style, "color": colours.setdefault(sampler, f"C{len(colours)}"),
                    "label": f"{run['name']}, {sampler}-{rows[0]['steps']}"}
            axes[0].plot(ws, [r["fid"] for r in rows], **line)
            axes[1].plot(ws, [r["class_accuracy"] for r in rows], **line)
    axes[0].set(xlabel="guidance scale w", ylabel="FID (feature space of the MNIST classifier)", yscale="log")
    axes[1].set(xlabel="guidance scale w", ylabel="share classified as the class asked for",
                ylim=(lowest_accuracy(runs), 1.01))
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7, loc="lower right")
    return fig


def per_class_figure(runs: list[dict]):
    panels = [(run, sampler) for run in runs for sampler in samplers(run)]
    fig = figure(3.2 * len(panels), 3.2)
    for ax, (run, sampler) in zip(fig.subplots(1, len(panels), sharey=True, squeeze=False)[0], panels):
        rows = rows_of(run, sampler)
        for digit in range(10):
            ax.plot([r["guidance_scale"] for r in rows], [r["class_accuracy_per_class"][digit] for r in rows],
                    marker=f"${digit}$", lw=0.8)
        ax.set(xlabel="guidance scale w", title=f"{run['name']}, {sampler}-{rows[0]['steps']}",
               ylim=(lowest_accuracy(runs), 1.01))
    fig.axes[0].set(ylabel="accuracy on the digit asked for")
    return fig


def main(runs_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    runs = [read_run(p.parent) for p in sorted(Path(runs_dir).glob("*/summary.json"))]
    real = json.loads((out / "references.json").read_text())
    lines = ["## Training", "", *training_table(runs), ""]
    for run in runs:
        lines += [f"## {run['name']}: quality against the guidance scale", "", *quality_table(run, real), ""]
        for sampler in samplers(run):
            lines += [f"### {run['name']}, {sampler}: accuracy per class asked for", "", *per_class_table(run, sampler), ""]
    (out / "tables.md").write_text("\n".join(lines))
    save(guidance_figure(runs, real), out / "guidance.png")
    save(per_class_figure(runs), out / "per_class.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
