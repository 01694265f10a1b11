"""The step study's tables and figures from its run directories (read with diffusion_lab.report's reader).

    python experiments/step_study/summarize.py <runs dir> <out dir>

Writes tables.md (training, then per model: FID, KID, precision, recall, coverage and seconds per 1,000 images
for each sampler × step count), fid_vs_steps.png, loss_curves.png and grids/<model>.png (the final sample
grids of each model at every step count, from the same noise).
"""

import shutil
import sys
from pathlib import Path

import numpy as np

from diffusion_lab.plotting import figure, save
from diffusion_lab.report import find_runs, read_run

SAMPLERS = ("ddpm", "ddim", "dpm_solver")


def model_name(run) -> str:
    c = run.choices
    return f"{c['dataset']}, {c['schedule']}, T={c['T']}"


def training_table(runs) -> list[str]:
    lines = ["| model | optimizer steps | epochs | train minutes | images/s | final train ε-MSE | final val ε-MSE |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        s = r.summary
        lines.append(f"| {model_name(r)} | {s['optimizer_steps']:,} | {s['epochs']} | {s['train_seconds'] / 60:.1f} | "
                     f"{s['train_images_per_second']:.0f} | {s['final_train_loss']:.4f} | {s['final_val_loss']:.4f} |")
    return lines


def quality_table(run) -> list[str]:
    lines = ["| sampler | steps | FID | KID ×10³ | precision | recall | coverage | s / 1,000 images |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (sampler, steps), q in sorted(run.quality.items(), key=lambda kv: (SAMPLERS.index(kv[0][0]), kv[0][1])):
        lines.append(f"| {sampler} | {steps} | {q['fid']:.2f} | {1e3 * q['kid_mean']:.1f} ± {1e3 * q['kid_std']:.1f} | "
                     f"{q['precision']:.3f} | {q['recall']:.3f} | {q['coverage']:.3f} | "
                     f"{1000 * q['seconds'] / q['n']:.0f} |")
    return lines


def fid_figure(runs):
    fig = figure(4 * len(runs), 3.4)
    axes = fig.subplots(1, len(runs), sharey=True, squeeze=False)[0]
    for ax, run in zip(axes, runs):
        for sampler in SAMPLERS:
            points = sorted((steps, q["fid"]) for (s, steps), q in run.quality.items() if s == sampler)
            if points:
                ax.plot(*zip(*points), marker="o", label=sampler)
        ax.set(xscale="log", yscale="log", xlabel="sampling steps", title=model_name(run))
    axes[0].set(ylabel="FID (feature space of the data set's classifier)")
    axes[0].legend()
    return fig


def smooth(values: list[float], window: int = 25) -> np.ndarray:
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid") if len(values) > window else np.asarray(values)


def loss_figure(runs):
    datasets = list(dict.fromkeys(r.choices["dataset"] for r in runs))
    fig = figure(5 * len(datasets), 3.6)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        for i, run in enumerate(r for r in runs if r.choices["dataset"] == dataset):
            steps, losses = zip(*run.train_loss)
            line, = ax.plot(steps[len(steps) - len(smooth(list(losses))):], smooth(list(losses)), lw=1,
                            label=f"{run.choices['schedule']}, T={run.choices['T']}: train (mean of 25 steps)")
            if run.val_loss:
                ax.plot(*zip(*run.val_loss), marker="o", ls="--", color=line.get_color(), label="  validation (EMA)")
        ax.set(yscale="log", xlabel="optimizer step", ylabel="ε-MSE", title=dataset, ylim=(0.015, 0.2))
        ax.legend(fontsize=7)
    return fig


def main(runs_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    runs = [read_run(p) for p in find_runs([runs_dir])]
    runs = [r for r in runs if r.status == "finished"]
    lines = ["## Training", "", *training_table(runs), ""]
    for run in runs:
        lines += [f"## {model_name(run)}", "", *quality_table(run), ""]
    (out / "tables.md").write_text("\n".join(lines))
    save(fid_figure(runs), out / "fid_vs_steps.png")
    save(loss_figure(runs), out / "loss_curves.png")
    (out / "grids").mkdir(exist_ok=True)
    for run in runs:
        shutil.copy(run.path / "samples" / "final_compare.png",
                    out / "grids" / f"{model_name(run).replace(', ', '-').replace('=', '')}.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
