"""Tables of experiments/cpu_recipe/run.sh, from the JSON files it keeps beside this script.

  python summarize.py table <dir>    <dir>/tables.md: the ablation, the samplers, and bench_quality per data set
"""

import json
import sys
from pathlib import Path


def interval(row: dict, key: str = "fid") -> str:
    low, high = row[f"{key}_ci"]
    return f"{row[key]:.1f} [{low:.1f}, {high:.1f}]"


# Each row: (the row it changes, the change). a0 is experiment=cpu_mnist before this study.
CHANGES = {
    "a0_base": ("", "ε-prediction, lr 1e-3 constant, unet_tiny [1,2], batch 64, EMA 0.999"),
    "a1_v": ("a0", "prediction=v"),
    "a2_cosine": ("a1", "module.lr_schedule=cosine"),
    "a3_lr2e-3": ("a2", "optimizer.lr=2e-3"),
    "a4_lr2e-3": ("a1", "optimizer.lr=2e-3"),
    "a5_mults122": ("a1", "model.channel_mults=[1,2,2]"),
    "a6_min_snr": ("a4", "loss_weighting=min_snr"),
    "a7_power_ema": ("a4", "callbacks.ema.gamma=6.94 (σ_rel 0.10)"),
    "a8_class": ("a6", "model.num_classes=10 (image i asks for class i mod 10)"),
}


def ablation_table(here: Path) -> list[str]:
    lines = ["## Ablation (MNIST, 4 minutes' worth of optimizer steps, n = 1,000, DDIM-50, 95 % bootstrap intervals)",
             "", "| row | from | change | optimizer steps | FID | precision | recall |", "|---|---|---|---|---|---|---|"]
    for path in sorted((here / "ablation").glob("*.json")):
        ours = json.loads(path.read_text())["ours"]
        parent, change = CHANGES[path.stem]
        lines.append(f"| {path.stem} | {parent} | `{change}` | {ours['optimizer_steps']:,} | {interval(ours)} | "
                     f"{ours['precision']:.3f} | {ours['recall']:.3f} |")
    return lines


def sampler_table(here: Path) -> list[str]:
    """One table per samplers*.json: the samplers at 50 NFE on one model, the same seeds."""
    lines = []
    for path in sorted(here.glob("samplers*.json")):
        evaluation = json.loads(path.read_text())
        lines += ["", f"## Samplers at <= 50 NFE on {evaluation['ckpt']} ({path.name}, the same seeds)", "",
                  "| sampler | steps | NFE | FID | precision | recall | s / 1,000 images |", "|---|---|---|---|---|---|---|"]
        for row in sorted(evaluation["results"], key=lambda r: r["fid"]):
            lines.append(f"| {row['sampler']} | {row['steps']} | {row['nfe']} | {interval(row)} | "
                         f"{row['precision']:.3f} | {row['recall']:.3f} | {row['seconds_per_1k']:.0f} |")
    return lines


def bench_tables(here: Path) -> list[str]:
    lines = []
    for path in sorted(here.glob("bench_quality_*.json")):
        report = json.loads(path.read_text())
        lines += ["", f"## bench_quality: {report['dataset']}, {report['minutes']:g} minutes each, n = {report['n']}, "
                  f"{report['cpu']} ({report['threads']} threads)", "",
                  "| side | optimizer steps | training images/s | sampler | FID |", "|---|---|---|---|---|"]
        for side in ("diffusers", "ours"):
            row = report[side]
            lines.append(f"| {side} | {row['optimizer_steps']:,} | {row['train_images_per_s']:.0f} | {row['sampler']} "
                         f"| {interval(row)} |")
        lines += ["", f"FID ratio ours / diffusers: **{report['fid_ratio']}** (from the intervals: "
                  f"{report['fid_ratio_bounds'][0]}–{report['fid_ratio_bounds'][1]}); real-data floor at this n: "
                  f"{report['floor_fid']:.1f}, ours {report['ours_fid_over_floor']}× the floor."]
    return lines


def main() -> None:
    command, here = sys.argv[1], Path(sys.argv[2])
    if command != "table":
        raise SystemExit(__doc__)
    text = "\n".join(["# CPU recipe: the tables", "", *ablation_table(here), *sampler_table(here), *bench_tables(here)])
    (here / "tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
