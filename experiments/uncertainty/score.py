"""Score the study's DDIM-50 and DDIM-200 draws at n = 200, 1,000 and 5,000 (the first n images of each: image i
has the same noise in both), with 95 % intervals, FID's floor and FID∞, and the paired differences.

    python experiments/uncertainty/score.py <draws dir with ddim-50/ and ddim-200/> <out.json>
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from diffusion_lab.files import write_json_atomic
from diffusion_lab.metrics import QualityMetrics, uncertainty

SETTINGS = ("ddim-50", "ddim-200")
SIZES = (200, 1000, 5000)


def main(draws: Path, out: Path) -> None:
    torch.manual_seed(0)
    metrics = QualityMetrics.for_dataset("mnist", os.environ.get("DIFFUSION_LAB_DATA", "./data"), real_n=10_000,
                                         resamples=200)
    images, sampling = {}, {}
    for name in SETTINGS:
        with np.load(draws / name / "samples.npz") as f:
            images[name] = torch.from_numpy(f["images"])[:, None]
        sampling[name] = json.loads((draws / name / "settings.json").read_text())
    features = {name: metrics.features(x) for name, x in images.items()}
    rows, paired = [], []
    for n in SIZES:
        start = time.perf_counter()
        statistics, results = {}, {}
        for name in SETTINGS:
            f, p = (t[:n] for t in features[name])
            results[name] = metrics.score(f, p, intervals=False)
            statistics[name] = metrics.statistics(f, p)
        cis, pairs = uncertainty.bootstrap(statistics, len(metrics.real_features), n, 200, pairs=[SETTINGS])
        seconds = time.perf_counter() - start
        for name in SETTINGS:
            s = sampling[name]
            rows.append({"setting": name, **results[name], **cis[name], "scoring_seconds_both": round(seconds, 1),
                         "seconds_per_1k": round(1000 * s["seconds"] / s["n"], 1)})
        paired += [dict(p, n=n) for p in pairs]
    write_json_atomic(out, {"results": rows, "paired": paired})
    print(markdown(rows, paired))


def cell(value: float | None, ci: list[float] | None = None, scale: float = 1.0) -> str:
    if value is None:
        return "–"
    return f"{scale * value:.3g}" + (f" [{scale * ci[0]:.3g}, {scale * ci[1]:.3g}]" if ci else "")


def markdown(rows: list[dict], paired: list[dict]) -> str:
    """The results and the paired differences as Markdown tables."""
    lines = ["| setting | n | FID [95 % CI] | floor (real vs real) | FID∞ | KID | precision | recall | coverage | "
             "sampling s / 1k images | scoring s (both settings) |", "|---" * 11 + "|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['n']} | {cell(r['fid'], r.get('fid_ci'))} | "
                     f"{cell(r.get('floor_fid'), r.get('floor_fid_ci'))} | {cell(r['fid_inf'], r.get('fid_inf_ci'))} | "
                     f"{cell(r['kid_mean'], r.get('kid_ci'))} | {cell(r['precision'], r.get('precision_ci'))} | "
                     f"{cell(r['recall'], r.get('recall_ci'))} | {cell(r['coverage'], r.get('coverage_ci'))} | "
                     f"{r['seconds_per_1k']} | {r['scoring_seconds_both']} |")
    lines += ["", "| n | metric | DDIM-50 − DDIM-200 [95 % CI] | distinguishable |", "|---|---|---|---|"]
    for p in paired:
        lines.append(f"| {p['n']} | {p['metric']} | {cell(p['diff'], p['ci'])} | {'yes' if p['distinguishable'] else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
