"""Shared fixtures: tiny IDX data sets written by the tests, and Hydra composition of conf/."""

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import diffusion_lab.resolvers  # noqa: F401  (registers the resolvers that conf/ uses)
from diffusion_lab.config import CONFIG_DIR

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share two cores: a thread each, for their subprocesses too
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read when torch loads: no test module has imported it yet

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("DIFFUSION_LAB_DATA", ROOT / "data"))


def write_idx(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images (N, 28, 28) uint8 and labels (N,) in MNIST's IDX format, as torchvision reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (folder / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, h, w) + images.tobytes())
    (folder / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


def make_tiny_dataset(root: Path, name: str = "MNIST", n_train: int = 256, n_test: int = 64) -> Path:
    """Blurry bright blobs on black, one position per class: enough structure for a loss to fall."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        cy, cx = 8 + 2 * (labels % 5), 8 + 6 * (labels // 5)
        blob = np.exp(-((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) / 12.0)
        images = np.clip(255 * blob + rng.normal(0, 8, blob.shape), 0, 255).astype(np.uint8)
        write_idx(root / name / "raw", split, images, labels)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_tiny_dataset(root, "MNIST")
    make_tiny_dataset(root, "FashionMNIST")
    return root


@pytest.fixture(scope="session")
def diffusers():
    """diffusers, the test-only reference for the schedules and samplers: a test that compares with it is
    skipped where it is not installed."""
    return pytest.importorskip("diffusers")


@pytest.fixture
def compose_cfg(tmp_path):
    """compose_cfg(*overrides) -> the config train.py would see, with Hydra's runtime fields set."""

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(script: str, *args: str, data: Path | None = None, cwd: Path | None = None, timeout: int = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one of the repository's entry points in a subprocess, as a user would."""
    # No W&B account here: the entry points must fall back to offline mode by themselves.
    full_env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    full_env.update({"NETRC": "/nonexistent/netrc", "WANDB_SILENT": "true", **(env or {})})
    if data is not None:
        full_env["DIFFUSION_LAB_DATA"] = str(data)
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


TINY_TRAIN = ["model=unet_tiny", "trainer=cpu", "T=50", "dataset.batch_size=32", "dataset.val_size=32",
              "trainer.limit_train_batches=4", "sampling.n_images=4", "trainer.log_every_n_steps=1",
              "quality.steps=5", "quality.n=8", "quality.final_n=8", "quality.real_n=32", "quality.feature_net.epochs=1"]


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """The run directory of `python train.py` on the tiny model at T=50, W&B offline: 2 epochs of 4 steps, grids
    at 5 and 10 steps and the sample quality measured after each epoch. Trained once per session, by the first
    worker that needs it (the others wait on a lock), and shared by every test that reads a run (test_train
    checks that it is complete)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    with FileLock(shared / "tiny_run.lock"):
        record = shared / "tiny_run.path"
        if record.exists():
            return Path(record.read_text())
        log_dir = shared / "tiny_run"
        result = run_cli("train.py", *TINY_TRAIN, "trainer.max_epochs=2", "sampling.every_n_epochs=1",
                         "sampling.steps=[5,10]", "quality.every_n_epochs=1", f"paths.log_dir={log_dir}",
                         data=tiny_data)
        assert result.returncode == 0, result.stderr[-3000:]
        (run,) = [p.parent for p in log_dir.glob("*/*/.hydra")]
        record.write_text(str(run))
    return run


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single `error: …` line of a command that refused its input: exit status 2, no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return errors[0]


@pytest.fixture
def run_in_process(monkeypatch, capsys):
    """run_in_process(main, *args, data=None) -> CompletedProcess-like result of an entry point (`cli.train_main`,
    `report.main`, …) called in this process with `sys.argv` set as its script would have it: the exit status
    (0 or SystemExit's code) and what it wrote to stdout and stderr. An exception other than SystemExit fails the
    test with its traceback, as it would print one."""

    def _run(main, *args: str, data: Path | None = None) -> subprocess.CompletedProcess:
        GlobalHydra.instance().clear()
        monkeypatch.setattr(sys, "argv", [main.__name__, *args])
        monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
        if data is not None:
            monkeypatch.setenv("DIFFUSION_LAB_DATA", str(data))
        capsys.readouterr()
        try:
            main()
            status = 0
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            GlobalHydra.instance().clear()
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(sys.argv, status, out, err)

    return _run
