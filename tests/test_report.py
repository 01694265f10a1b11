"""report.py on a real 2×2 tiny sweep: one row per run, failed runs listed, and the HTML checked in Chromium
(slow); and, without a subprocess, that the page escapes what runs name."""

import base64
import io
import re
import shutil
import subprocess

import pytest
from PIL import Image

from conftest import TINY_TRAIN, one_line_error, run_cli
from diffusion_lab.report import Run, main
from diffusion_lab.report.render import render_html

slow = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def sweep(tiny_data, tmp_path_factory):
    """multirun/<date>/<time>-<suffix>/ of a 2 (schedule) × 2 (T) sweep of tiny runs."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = run_cli("train.py", "-m", *TINY_TRAIN, "trainer.max_epochs=1", "~callbacks.figures",
                     "quality.final_steps=[5,10]", "sampling.steps=[5,10]", "schedule=linear,cosine", "T=30,50",
                     cwd=cwd, data=tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = cwd.glob("multirun/*/*")
    return sweep_dir


@slow
def test_a_2x2_sweep_gives_4_complete_runs_each_with_its_own_wandb_run(sweep):
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name[:2] for p in jobs] == ["0-", "1-", "2-", "3-"]
    assert all((job / "summary.json").exists() and list(job.glob("wandb/offline-run-*")) for job in jobs)


@slow
def test_report_has_a_row_per_run_and_lists_a_killed_run_as_failed(sweep, tmp_path, run_in_process):
    killed = tmp_path / "killed"
    shutil.copytree(next(sweep.glob("0-*")), killed)
    (killed / "summary.json").unlink()
    result = run_in_process(main, str(sweep), str(killed), "-o", str(tmp_path / "out" / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "out" / "report.html").read_text()
    rows = re.findall(r'<tr class="(\w+)" title=', page)
    assert rows == ["finished"] * 4 + ["failed"]
    assert "no summary.json" in page and "http" not in page.replace("http-equiv", "")  # nothing from a network
    header = re.search(r"<thead><tr>(.*?)</tr>", page).group(1)
    for column in ("schedule", "T", "train loss", "val loss", "FID ddim@5", "KID ddim@10", "train min", "images/s"):
        assert f"<th>{column}</th>" in header
    # One best per plain numeric column (losses, minutes, images/s); a FID or KID only where its interval is
    # clear of every other run's, which for four runs of 8 steps it need not be.
    assert page.count('class="best') >= 4
    md = (tmp_path / "out" / "report.md").read_text()
    assert [line.split(" | ")[0] for line in md.splitlines() if line.startswith("| #") or line.startswith("| killed")] \
        == ["| #0", "| #1", "| #2", "| #3", "| killed"]
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3 + 5 * 3  # three charts; per run (and its killed copy) ddim-5, ddim-10, DDPM-T
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()


def test_report_of_nothing_says_so(tmp_path, run_in_process):
    assert "no run directories" in one_line_error(run_in_process(main, str(tmp_path)))


def test_wandb_runs_without_an_account_fail_in_one_line(tmp_path, run_in_process, monkeypatch):
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")
    error = one_line_error(run_in_process(main, "--wandb", "someone/diffusion-lab", "-o", str(tmp_path / "r.html")))
    assert error.startswith("error: --wandb someone/diffusion-lab: cannot read the project")
    assert not (tmp_path / "r.html").exists()


@slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_report_renders_in_headless_chromium(sweep, tmp_path):
    page = tmp_path / "report.html"
    assert run_cli("report.py", str(sweep), "-o", str(page)).returncode == 0
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-ready="1"' in dom.stdout and 'data-broken-images="0"' in dom.stdout, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri()],
                   capture_output=True, timeout=120)
    pixels = Image.open(shot).convert("L")
    low, high = pixels.getextrema()
    assert high - low > 100 and len(set(pixels.getdata())) > 20  # text, tables and charts, not a blank page


def test_names_choices_and_reasons_are_escaped_in_the_html(tmp_path):
    script = "<script>alert(1)</script>"
    grid = tmp_path / "grid.png"
    Image.new("L", (4, 4)).save(grid)
    runs = [Run(path=tmp_path / script, name=script, status="failed", reason=script,
                choices={"schedule": script, "T": "50"}, grids={script: grid}),
            Run(path=tmp_path / "b", name="b", status="finished", choices={"schedule": "cosine", "T": "50"},
                summary={"final_train_loss": 0.5})]
    page = render_html(runs, title=script)
    assert page.count("<script>") == 1 and "alert(1)</script>" not in page  # only the page's own script
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"<title>{escaped}</title>" in page and f'<td class="text">{escaped}</td>' in page
    assert f"<th>{escaped}</th>" in page and f'alt="{escaped}"' in page and f": {escaped}</li>" in page
    assert re.findall(r'<tr class="(\w+)" title=', page) == ["failed", "finished"]
    assert 'class="best" data-v="0.5"' not in page and 'data-v="0.5">0.5</td>' in page  # one value: no best


def test_a_quality_number_is_best_only_where_its_interval_is_clear_of_the_others():
    from diffusion_lab.report.tables import Estimate, best_in_columns, fmt

    columns = ["FID ddim@50", "train loss"]
    overlapping = [[Estimate(10.0, (9.0, 11.0)), 0.2], [Estimate(10.5, (9.5, 11.5)), 0.1]]
    clear = [[Estimate(10.0, (9.0, 11.0)), 0.2], [Estimate(14.0, (12.0, 16.0)), 0.1]]
    assert best_in_columns(columns, overlapping) == {(1, 1)}  # the losses have a best; the FIDs do not
    assert best_in_columns(columns, clear) == {(0, 0), (1, 1)}
    assert fmt(Estimate(10.0, (9.0, 11.0))) == "10 [9, 11]"


def test_the_pareto_front_keeps_what_no_cheaper_setting_beats():
    from diffusion_lab.evaluate import pareto_front

    assert pareto_front([(50, 30.0), (10, 40.0), (100, 35.0), (200, 20.0)]) == [(10, 40.0), (50, 30.0), (200, 20.0)]
