"""A long `-m` sweep leaves nothing behind: run `--jobs` tiny jobs (the csv logger, a few steps each) in one
`train.py -m` process and record, at the start of each job, the process's open file descriptors, its threads and
its child processes. Prints one JSON object: the jobs run, the run folders made, and those counts at the second
and the last job (what the jobs before them left open), with the peak memory of the process.

    python benchmarks/soak_sweep.py --jobs 100 [--data DIR] [--out DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pytorch_lightning.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=unet_tiny", "trainer=cpu", "T=50", "dataset.batch_size=8", "dataset.val_size=8",
        "trainer.max_steps=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0", "logger=csv", "~callbacks.quality", "~callbacks.figures",
        "~callbacks.sample_grid"]


def child_processes(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


class ResourceProbe(Callback):
    """Appends {"fds", "threads", "children", "max_rss_mib"} of this process to `path` as each fit starts."""

    def __init__(self, path: str):
        self.path = path

    def on_fit_start(self, trainer, pl_module) -> None:
        import resource

        row = {"fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
               "children": len(child_processes(os.getpid())),
               "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--data", default=os.environ.get("DIFFUSION_LAB_DATA", "data"))
    parser.add_argument("--out", default=None, help="log dir of the sweep (default: a temporary folder)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="soak-"))
    probe = out / "probe.jsonl"
    env = {**os.environ, "DIFFUSION_LAB_DATA": args.data, "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", f"seed=range(0,{args.jobs})", *TINY,
                             "+callbacks.probe._target_=soak_sweep.ResourceProbe", f"+callbacks.probe.path={probe}",
                             f"hydra.sweep.dir={out / 'sweep'}"], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"the sweep failed ({result.returncode}): {result.stderr[-2000:]}")
    rows = [json.loads(line) for line in probe.read_text().splitlines()]
    folders = [p for p in (out / "sweep").iterdir() if p.is_dir()]
    print(json.dumps({
        "jobs": args.jobs, "jobs_started": len(rows), "run_folders": len(folders),
        "folders_with_metrics": sum((p / "csv" / "metrics.csv").is_file() for p in folders),
        "second_job": rows[1] if len(rows) > 1 else None, "last_job": rows[-1],
        "seconds": round(seconds, 1), "sweep_dir": str(out / "sweep"),
    }, indent=2))


if __name__ == "__main__":
    main()
