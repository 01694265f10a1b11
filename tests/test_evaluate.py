"""evaluate.py end to end on a tiny run: every sampler × step count measured, written, plotted, never overwritten."""

import json
import shutil

import pytest

from conftest import run_cli
from diffusion_lab.cli import evaluate_main
from diffusion_lab.metrics.uncertainty import paired_difference

pytestmark = pytest.mark.slow

KEYS = {"sampler", "spacing", "steps", "nfe", "fid", "fid_inf", "floor_fid", "kid_mean", "kid_std", "precision", "recall",
        "coverage", "class_entropy", "class_entropy_max", "classes_below_half", "confidence", "n", "seconds_per_1k",
        "seconds", "images_per_second", "fid_ci", "floor_fid_ci", "kid_ci", "precision_ci", "recall_ci", "coverage_ci",
        "class_entropy_ci", "replicates"}  # no fid_inf_ci: FID∞ needs n >= 3 × 128, so fid_inf is null at n = 24


def test_evaluate_writes_eval_json_and_plots(tiny_run, tiny_data, tmp_path, run_in_process):
    args = [f"ckpt={tiny_run}", "samplers=[ddim,dpm_solver]", "steps=[5,10]", "n=24", "real_n=48",
            "batch_size=16", "feature_net.epochs=1", f"feature_net.cache_dir={tmp_path}", f"data_dir={tiny_data}"]
    first = run_cli("evaluate.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tiny_run / "eval"
    report = json.loads((out / "eval.json").read_text())
    assert [(r["sampler"], r["steps"]) for r in report["results"]] == [
        ("ddim", 5), ("ddim", 10), ("dpm_solver", 5), ("dpm_solver", 10)]
    assert all(set(r) == KEYS and r["n"] == 24 and r["fid"] >= 0 and r["fid_inf"] is None for r in report["results"])
    assert [r["nfe"] for r in report["results"]] == [5, 10, 5, 10] and all(r["seconds_per_1k"] > 0 for r in report["results"])
    assert report["real_n"] == 48 and "not Inception" in report["feature_space"]
    assert [(p["setting"], p["against"]) for p in report["paired"] if p["metric"] == "fid"] == [  # image i: same noise
        ("ddim-5", "ddim-10"), ("dpm_solver-5", "dpm_solver-10"), ("ddim-5", "dpm_solver-5"), ("ddim-10", "dpm_solver-10")]
    assert {p["metric"] for p in report["paired"]} == {"fid", "kid", "precision", "recall", "coverage", "class_entropy"}
    assert all(p["ci"][0] <= p["diff"] <= p["ci"][1] or p["distinguishable"] for p in report["paired"])
    assert report["samplers"]["ddim"]["eta"] == 0.0
    # The kept bootstrap replicates pair two settings offline exactly as the call paired them (summaries of
    # several evaluate.py calls, experiments/step_study, rely on it).
    kept = {f"{r['sampler']}-{r['steps']}": r["replicates"]["fid"] for r in report["results"]}
    (row,) = [p for p in report["paired"] if (p["setting"], p["against"], p["metric"]) == ("ddim-5", "ddim-10", "fid")]
    offline = paired_difference(kept["ddim-5"]["estimate"], kept["ddim-5"]["values"], kept["ddim-10"]["estimate"],
                                kept["ddim-10"]["values"])
    assert offline == {key: row[key] for key in ("diff", "ci", "distinguishable")}
    assert report["resamples"] == 200 and len(kept["ddim-5"]["values"]) == 200
    for plot in ("fid_vs_steps", "kid_mean_vs_steps", "fid_vs_nfe", "fid_vs_seconds"):
        assert (out / f"{plot}.png").stat().st_size > 0
    lines = first.stdout.splitlines()
    (header,) = [i for i, line in enumerate(lines) if line.split()[:3] == ["sampler", "steps", "NFE"]]
    assert [line.split()[:2] for line in lines[header + 1:header + 5]] == [["ddim", "5"], ["ddim", "10"],
                                                                         ["dpm_solver", "5"], ["dpm_solver", "10"]]
    assert list(out.glob("wandb/offline-run-*")), "the results go to an offline W&B run without an account"
    before = (out / "eval.json").read_bytes()

    second = run_in_process(evaluate_main, *args, "wandb=false")  # the same entry point, in this process
    assert second.returncode == 0, second.stderr[-3000:]
    assert (out / "eval.json").read_bytes() == before
    again = json.loads((tiny_run / "eval-1" / "eval.json").read_text())
    assert [r["fid"] for r in again["results"]] == [r["fid"] for r in report["results"]]  # same seeds, same numbers


def test_evaluate_at_equal_cost_over_solvers_and_step_schedules(tiny_run, tiny_data, tmp_path, run_in_process):
    """nfe= budgets: each solver its most steps within them (Heun 2K − 1 evaluations), on each step schedule of
    `spacings`; the pairs compare settings of equal NFE."""
    result = run_in_process(evaluate_main, f"ckpt={tiny_run}", "samplers=[heun,dpm_solver]",
                            "spacings=[trailing,karras]", "nfe=[3,6]", "n=8", "real_n=48", "resamples=20",
                            "wandb=false", "feature_net.epochs=1", f"feature_net.cache_dir={tmp_path}",
                            f"data_dir={tiny_data}")
    assert result.returncode == 0, result.stderr[-3000:]
    (out,) = [p for p in tiny_run.glob("eval*") if "heun" in json.loads((p / "eval.json").read_text())["samplers"]]
    rows = json.loads((out / "eval.json").read_text())["results"]
    assert [(r["sampler"], r["spacing"], r["steps"], r["nfe"]) for r in rows] == [
        ("heun", "trailing", 2, 3), ("heun", "trailing", 3, 5), ("heun+karras", "karras", 2, 3),
        ("heun+karras", "karras", 3, 5), ("dpm_solver", "trailing", 3, 3), ("dpm_solver", "trailing", 6, 6),
        ("dpm_solver+karras", "karras", 3, 3), ("dpm_solver+karras", "karras", 6, 6)]
    pairs = {(p["setting"], p["against"]) for p in json.loads((out / "eval.json").read_text())["paired"]}
    assert ("heun-2", "dpm_solver-3") in pairs and ("heun+karras-2", "dpm_solver+karras-3") in pairs
    assert ("heun-3", "dpm_solver-6") not in pairs  # 5 against 6 network evaluations: not an equal-cost pair


def test_two_processes_split_the_sampling_and_score_exactly_n(tiny_run, tiny_data, tmp_path):
    result = run_cli("evaluate.py", f"ckpt={tiny_run}", "samplers=[ddim]", "steps=[4]", "n=9", "real_n=48",
                     "devices=2", "accelerator=cpu", "wandb=false", "feature_net.epochs=1",
                     f"feature_net.cache_dir={tmp_path}", f"data_dir={tiny_data}")
    assert result.returncode == 0, result.stderr[-3000:]
    (out,) = [p for p in tiny_run.glob("eval*") if json.loads((p / "eval.json").read_text())["world_size"] == 2]
    (row,) = json.loads((out / "eval.json").read_text())["results"]
    assert row["n"] == 9 and not list(out.glob("wandb"))


def test_evaluate_nll_writes_the_bound_with_its_terms_and_interval(tiny_run, tiny_data, tmp_path, run_in_process):
    run = tmp_path / "run"
    shutil.copytree(tiny_run / "checkpoints", run / "checkpoints")  # its own eval folder, beside no other test's
    result = run_in_process(evaluate_main, f"ckpt={run}", "samplers=[]", "nll=true", "nll_n=6", "nll_steps=10",
                            "nll_ode=true", "nll_ode_n=2", "nll_ode_tolerance=1e-3", "wandb=false",
                            f"data_dir={tiny_data}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run / "eval" / "eval.json").read_text())
    nll = report["nll"]
    assert "results" not in report and nll["n"] == 6 and nll["steps"] == 10 and nll["variance"] == "fixed_small"
    assert nll["bpd_ci"][0] < nll["bpd"] < nll["bpd_ci"][1] and 0 < nll["bpd"] < 50
    assert sum(nll["terms"][k]["bpd"] for k in ("prior", "decoder", "kl")) == pytest.approx(nll["bpd"])
    assert nll["per_t"]["t"] == [0, 5, 11, 16, 22, 27, 33, 38, 44, 49] and len(nll["per_t"]["bpd"]) == 10
    ode = nll["ode"]  # the probability-flow ODE on 2 dequantized images
    assert ode["n"] == 2 and ode["network_evaluations"] > 0 and ode["bpd_ci"][0] < ode["bpd"] < ode["bpd_ci"][1]
    assert (run / "eval" / "nll_terms.png").stat().st_size > 0
    assert "variational bound:" in result.stdout and "bits/dim" in result.stdout
