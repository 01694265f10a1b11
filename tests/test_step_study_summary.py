"""experiments/step_study/summarize.py: the study's tables, figures and choices, from eval.json files written here
with known FIDs and bootstrap replicates (no sampling)."""

import importlib.util
import json

import numpy as np
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("step_study_summarize", ROOT / "experiments" / "step_study" / "summarize.py")
summarize = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summarize)

N, RESAMPLES = 100, 50
SHARED = np.random.default_rng(0).normal(0, 2, RESAMPLES)  # replicate k resamples the same images in every setting


def result(sampler, spacing, nfe, fid, steps=None, spread=0.1, seed=1):
    """One setting of an eval.json: its replicates share the resampling noise of every other setting, plus their own."""
    own = np.random.default_rng(seed).normal(0, spread, RESAMPLES)
    values = (fid + SHARED + own).tolist()
    return {"sampler": sampler, "spacing": spacing, "nfe": nfe, "steps": steps or nfe, "n": N, "fid": fid,
            "fid_ci": [fid - 3, fid + 3], "floor_fid": 1.5, "fid_inf": fid - 1, "kid_mean": 0.004,
            "kid_ci": [0.003, 0.005], "precision": 0.6, "recall": 0.9, "coverage": 0.5, "seconds": 10.0,
            "seconds_per_1k": 5.0 * nfe, "replicates": {"fid": {"estimate": fid, "values": values}}}


def write(results, model, folder, *rows, resamples=RESAMPLES):
    path = results / model / folder / "eval.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"real_n": 1000, "resamples": resamples, "seed": 0, "results": list(rows)}))


@pytest.fixture
def study(tmp_path):
    """A headline model with its pilot, full chain and grid: DDIM converges to 20 above the full chain's 10, DDPM
    reaches the full chain from NFE 50 on, Heun's budget of 10 buys 9 evaluations."""
    results = tmp_path / "results"
    write(results, "mnist_linear", "pilot", result("ddim", "trailing", 10, 30.0), result("ddim", "linspace", 10, 40.0),
          result("heun", "karras", 9, 25.0, steps=5), result("heun", "trailing", 9, 35.0, steps=5))
    write(results, "mnist_linear", "ddpm-full", result("ddpm", "leading", 1000, 10.0, seed=2))
    fids = {"ddpm": {10: 60.0, 20: 30.0, 50: 10.1, 100: 10.0, 200: 9.9},
            "ddim": {10: 40.0, 20: 25.0, 50: 21.0, 100: 20.0, 200: 20.0},
            "heun": {10: 22.0, 20: 19.0, 50: 18.0, 100: 18.0, 200: 18.0}}
    for i, (solver, by) in enumerate(fids.items()):
        for nfe, fid in by.items():
            write(results, "mnist_linear", f"{solver}/nfe{nfe}",
                  result(solver, "leading" if solver == "ddpm" else "trailing", nfe - (solver == "heun"), fid,
                         seed=10 * i + nfe))
    return tmp_path


def test_each_solver_takes_the_step_schedule_of_its_lowest_pilot_fid(study):
    pilot = study / "results" / "mnist_linear" / "pilot" / "eval.json"
    assert summarize.best_spacing(pilot, "ddim") == "trailing" and summarize.best_spacing(pilot, "heun") == "karras"
    with pytest.raises(SystemExit, match="solver=unipc: not in"):
        summarize.best_spacing(pilot, "unipc")


def test_the_best_higher_order_solver_is_the_lowest_mean_fid_at_10_20_50_and_never_a_first_order_one(study):
    assert summarize.best_solver(study / "results" / "mnist_linear") == "heun trailing"
    write(study / "results", "other", "ddim/nfe10", result("ddim", "trailing", 10, 5.0))
    with pytest.raises(SystemExit, match="no higher-order solver has NFE 10, 20 and 50 yet"):
        summarize.best_solver(study / "results" / "other")


def test_a_row_falls_in_the_budget_it_was_drawn_for_and_pairs_only_with_rows_of_the_same_images(study):
    rows = summarize.load(study / "results")["mnist_linear"]
    table = summarize.grid(rows)
    assert sorted(table) == ["ddim+trailing", "ddpm+leading", "heun+trailing"]
    assert [table["heun+trailing"][b]["nfe"] for b in (10, 200)] == [9, 199]  # Heun's odd NFE in its budget
    full = summarize.full_chain(rows)
    d = summarize.paired(table["ddim+trailing"][200], full)
    assert d["diff"] == pytest.approx(10.0) and d["distinguishable"] and d["ci"][0] > 9  # the shared noise cancels
    write(study / "results", "mnist_linear", "odd", result("ddim", "trailing", 10, 30.0), resamples=RESAMPLES + 1)
    odd = next(r for r in summarize.load(study / "results")["mnist_linear"] if r.folder == "odd")
    with pytest.raises(ValueError, match="do not pair"):
        summarize.paired(odd, full)


def test_a_solver_comes_within_the_full_chain_from_the_budget_after_which_it_is_never_worse(study):
    rows = summarize.load(study / "results")["mnist_linear"]
    table, full = summarize.grid(rows), summarize.full_chain(rows)
    assert summarize.within(table["ddpm+leading"], full) == 50
    assert summarize.within(table["ddim+trailing"], full) is None  # it converges elsewhere


def test_the_report_writes_the_headline_tables_and_both_figures(study):
    summarize.report(study)
    tables = (study / "tables.md").read_text()
    assert "## mnist_linear: every solver at NFE 5-200 (n = 100 on the same seeds" in tables
    assert "the full chain (ancestral DDPM, all T steps): 10.0 [7, 13] (n = 100)." in tables
    ddpm = next(line for line in tables.splitlines() if line.startswith("| ddpm+leading | - | 60.0 [57, 63] |"))
    assert ddpm.endswith("| 50 |")  # within the full chain from NFE 50
    assert "| heun+trailing | - | 22.0 [19, 25] (9) |" in tables
    assert "| heun | 35.0 [32, 38] | - | 25.0 [22, 28] |" in tables  # the pilot: trailing, linspace, karras
    for axis in ("nfe", "seconds"):
        assert (study / f"fid_vs_{axis}_mnist_linear.png").stat().st_size > 10_000


def test_the_report_links_each_comparison_grid_in_its_settings_row_and_nfe_column(study):
    for name in ("ddim+trailing-nfe10", "ddim+trailing-nfe50", "ddpm+leading-nfe50"):
        (study / "results" / "mnist_linear" / "grids" / name).mkdir(parents=True)
        (study / "results" / "mnist_linear" / "grids" / name / "grid.png").write_bytes(b"")
    summarize.report(study)
    tables = (study / "tables.md").read_text()
    assert "| solver+spacing | NFE 10 | NFE 50 |" in tables
    assert ('| ddim+trailing | <img src="results/mnist_linear/grids/ddim+trailing-nfe10/grid.png" width="160"> | '
            '<img src="results/mnist_linear/grids/ddim+trailing-nfe50/grid.png" width="160"> |') in tables
    assert '| ddpm+leading | - | <img src="results/mnist_linear/grids/ddpm+leading-nfe50/grid.png" width="160"> |' in tables


def test_the_variance_table_pairs_pinned_variances_with_the_same_networks_own_and_stays_out_of_the_comparison(study):
    results = study / "results"
    own = {10: 40.0, 20: 30.0, 50: 20.0}
    write(results, "mnist_learned", "n100/ddpm", *(result("ddpm", "leading", b, fid, seed=b) for b, fid in own.items()))
    write(results, "mnist_learned", "n100/ddpm_fixed_small",
          *(result("ddpm_fixed_small", "leading", b, fid - 5, seed=100 + b) for b, fid in own.items()))
    write(results, "mnist_learned", "n100/ddpm_fixed_large", result("ddpm_fixed_large", "leading", 10, 400.0, seed=7))
    write(results, "mnist_linear", "n100/ddpm", result("ddpm", "leading", 10, 35.0, seed=8))
    summarize.report(study)
    tables = (study / "tables.md").read_text()
    assert "## mnist: respaced DDPM's reverse variance (n = 100; ΔFID paired" in tables
    assert "| linear β, T = 1000, learned Σ (L_hybrid) | learned, its own | 40.0 [37, 43] | 30.0 [27, 33] | 20.0 [17, 23] |" in tables
    pinned = next(line for line in tables.splitlines() if "| β̃' (pinned) |" in line)
    assert pinned.count("<br>Δ -5.0 [") == 3 and pinned.count("]*") == 3  # the same images: a distinguishable −5
    large = next(line for line in tables.splitlines() if "| β' (pinned) |" in line)
    assert "400.0 [397, 403]<br>Δ +360.0 [" in large and large.endswith("| - | - |")
    # The headline has no pinned variance: no row of its own in the variance table
    assert "| linear β, T = 1000 (the headline) | β̃' (fixed), its own |" not in tables
    four_models = tables.split("## mnist: the four models")[1].split("##")[0]
    assert "ddpm_fixed" not in four_models and "| linear β, T = 1000, learned Σ (L_hybrid) | ddpm+leading |" in four_models
