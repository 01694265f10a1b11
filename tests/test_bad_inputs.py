"""Bad inputs for every command: each exits with status 2 and one `error:` line that names the key and what it
allows (no traceback), and leaves every earlier output as it was.

Every case runs through its command's real entry point in this process (Hydra composes, the checks and the
objects refuse, `errors.one_line_errors` prints); a handful also run as a user runs them, in a subprocess of
their script, which proves the exit status, the missing traceback and the removed run directory for real."""

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import TINY_TRAIN, one_line_error, run_cli
from diffusion_lab import cli, report
from diffusion_lab.config import SAMPLERS
from diffusion_lab.viz.__main__ import main as viz_main

ALL_SAMPLERS = ", ".join(SAMPLERS)  # the options of conf/sampler/, as the messages list them

# (script, arguments, the parts the one line must contain). {run}: a finished run; {outputs}: the folder that
# holds it (train.py writes there); {truncated}, {edited}, {foreign}: bad checkpoint files beside it.
CASES = [
    # train.py: keys and group options, refused while Hydra composes the config
    ("train.py", ["trainr.max_epochs=3"], ["trainr.max_epochs", "did you mean trainer?", "allowed keys are"]),
    ("train.py", ["optimizer.lrr=1e-3"], ["optimizer.lrr", "did you mean lr?", "allowed keys are lr, weight_decay"]),
    ("train.py", ["schedule=cosin"], ["schedule=cosin", "allowed values are cosine, linear, sigmoid"]),
    ("train.py", ["model=unet_huge"], ["model=unet_huge", "allowed values are unet_base, unet_small, unet_tiny"]),
    ("train.py", ["dataset=cifar10"], ["dataset=cifar10", "allowed values are fashion_mnist, mnist"]),
    ("train.py", ["T=[1,"], ["T=[1,", "cannot parse", "key=value"]),
    ("train.py", ["after_training.budget=-5"], ["after_training.budget=-5", "allowed values are numbers > 0 or None or auto"]),
    # train.py: values, refused before anything heavy is imported
    ("train.py", ["T=0"], ["T=0", "allowed values are integers >= 1"]),
    # train.py: the model group, whose values once ended in PyTorch tracebacks
    ("train.py", ["model.channels=0"], ["model.channels=0", "allowed values are integers >= 1"]),
    ("train.py", ["model.channels=-8"], ["model.channels=-8", "allowed values are integers >= 1"]),
    ("train.py", ["model.channel_mults=[1,0]"], ["model.channel_mults=[1, 0]", "non-empty lists of integers >= 1"]),
    ("train.py", ["model.norm_groups=0"], ["model.norm_groups=0", "allowed values are integers >= 1"]),
    ("train.py", ["model.dropout=2"], ["model.dropout=2", "allowed values are numbers >= 0 and < 1"]),
    ("train.py", ["schedule=cosine", "schedule.max_beta=1.5"], ["schedule.max_beta=1.5", "numbers > 0 and < 1"]),
    ("train.py", ["callbacks.checkpoint.every_n_minutes=0"], ["callbacks.checkpoint.every_n_minutes=0",
                                                              "allowed values are numbers > 0 or None"]),
    ("train.py", ["T=abc"], ["T='abc'", "allowed values are integers >= 1"]),
    ("train.py", ["optimizer.lr=-1e-3"], ["optimizer.lr=-0.001", "allowed values are numbers > 0"]),
    ("train.py", ["sampling.steps=[5,80]"], ["sampling.steps=[5, 80]", "80 not allowed", "integers 1..T=50"]),
    ("train.py", ["quality.steps=0"], ["quality.steps=0", "integers 1..T=50"]),
    ("train.py", ["sampler.eta=1.5"], ["sampler.eta=1.5", "allowed values are numbers >= 0 and <= 1"]),
    ("train.py", ["dataset.batch_size=0"], ["dataset.batch_size=0", "allowed values are integers >= 1"]),
    ("train.py", ["trainer.precision=bf15"], ["trainer.precision='bf15'", "allowed values are 32-true"]),
    ("train.py", ["trainer.max_epochs=0"], ["trainer.max_epochs=0", "allowed values are integers >= 1 or -1"]),
    ("train.py", ["trainer.devices=0"], ["trainer.devices=0", "allowed values are integers >= 1"]),
    ("train.py", ["trainer.max_time=15min"], ["trainer.max_time='15min'", "DD:HH:MM:SS"]),
    ("train.py", ["speed.compile=maybe"], ["speed.compile='maybe'", "allowed values are True, False"]),
    ("train.py", ["callbacks.checkpoint.save_top_k=0"], ["callbacks.checkpoint.save_top_k=0", "integers >= 1 or -1"]),
    ("train.py", ["callbacks.ema.decay=1.5"], ["callbacks.ema.decay=1.5", "allowed values are numbers >= 0 and < 1"]),
    ("train.py", ["dataset.name=cifar"], ["dataset.name='cifar'", "allowed values are mnist, fashion_mnist"]),
    ("train.py", ["prediction=epsilon"], ["prediction='epsilon'", "allowed values are eps, x0, v"]),
    ("train.py", ["loss_weighting=snr"], ["loss_weighting='snr'", "allowed values are none, min_snr"]),
    ("train.py", ["resume=/no/such/run"], ["resume='/no/such/run'", "a run directory or a .ckpt file"]),
    ("train.py", ["sampler.spacing=cosine"],
     ["sampler.spacing='cosine'", "allowed values are trailing, linspace, leading, karras, exponential, log_snr"]),
    ("train.py", ["sampler=dpm_solver", "sampler.order=4"], ["sampler.order=4", "allowed values are 2, 3"]),
    ("train.py", ["sampler=dpm_solver", "sampler.algorithm=dpmsolver"],
     ["sampler.algorithm='dpmsolver'", "allowed values are dpmsolver++, sde-dpmsolver++"]),
    ("train.py", ["sampler=heun", "sampler.s_churn=-1"], ["sampler.s_churn=-1", "allowed values are numbers >= 0"]),
    ("train.py", ["sampler.dynamic_threshold=1.5"],
     ["sampler.dynamic_threshold=1.5", "allowed values are numbers > 0 and < 1 or None"]),
    ("train.py", ["schedule.zero_terminal_snr=true"],
     ["prediction='eps'", "allowed values with schedule.zero_terminal_snr=true are v, x0"]),
    ("train.py", ["model.learn_sigma=true"], ["model.learn_sigma=true: allowed with loss=hybrid or loss=vlb"]),
    ("train.py", ["loss=hybrid"], ["loss=hybrid: allowed only with model.learn_sigma=true"]),
    ("train.py", ["loss=kl"], ["loss='kl'", "allowed values are simple, hybrid, vlb"]),
    ("train.py", ["t_sampler=stratified"], ["t_sampler='stratified'", "allowed values are auto, uniform, importance"]),
    ("train.py", ["module.val_bpd.timesteps=0"], ["module.val_bpd.timesteps=0", "allowed values are integers >= 1"]),
    ("train.py", ["sampling.steps=[10]", "sampling.nfe=[10]"],
     ["sampling.nfe=[10]", "allowed only without sampling.steps="]),
    # train.py: values the built objects refuse (schedule, U-Net, EMA, data), before any data is read
    ("train.py", ["T=10"], ["T=10: schedule=linear", "use T >= 21 or schedule=cosine"]),
    ("train.py", ["model.channels=12"], ["model.channels=12", "divisible by model.norm_groups=8"]),
    ("train.py", ["dataset.val_size=100000"], ["dataset.val_size=100000", "allowed values are 1..64"]),
    # resuming into another model
    ("train.py", ["resume={run}", "T=200"], ["resume=", "another model or schedule", "T: 50 → 200"]),
    # sample.py and evaluate.py
    ("sample.py", [], ["ckpt: missing", "ckpt=<value>"]),
    ("sample.py", ["ckpt={run}", "n=0"], ["n=0", "allowed values are integers >= 1"]),
    ("sample.py", ["ckpt={run}", "sampler=plms"], ["sampler=plms", f"allowed values are {ALL_SAMPLERS}"]),
    ("sample.py", ["ckpt={run}", "class=3"], ["class=3", "this run is unconditional", "class=null"]),
    ("sample.py", ["ckpt={run}", "guidance_scale=-1"], ["guidance_scale=-1", "allowed values are numbers >= 0"]),
    ("sample.py", ["ckpt={run}", "steps=80"], ["steps=80", "80 not allowed", "integers 1..T=50"]),
    ("sample.py", ["ckpt={run}", "steps=20", "nfe=10"], ["nfe=10", "allowed only without steps="]),
    ("sample.py", ["ckpt={run}", "sampler=heun", "nfe=0"], ["nfe=0", "allowed values are integers >= 1 or None"]),
    ("sample.py", ["ckpt={truncated}"], ["ckpt=", "cannot be read as a checkpoint", "left as it is"]),
    ("sample.py", ["ckpt={foreign}"], ["ckpt=", "cannot be read as a checkpoint"]),
    ("sample.py", ["ckpt={edited}"], ["ckpt=", "does not match the fingerprint"]),
    ("evaluate.py", ["ckpt={run}", "samplers=[plms]"], ["samplers", f"allowed values are lists of {ALL_SAMPLERS}"]),
    ("evaluate.py", ["ckpt={run}", "samplers=[]"], ["samplers=[]: allowed only with nll=true"]),
    ("evaluate.py", ["ckpt={run}", "nll=true", "nll_steps=80"], ["nll_steps=80", "integers 1..T=50"]),
    ("evaluate.py", ["ckpt={run}", "nll_ode=true"], ["nll_ode=true: allowed only with nll=true"]),
    ("evaluate.py", ["ckpt={run}", "nll_variance=learned"], ["nll_variance='learned'", "fixed_small, fixed_large"]),
    ("sample.py", ["ckpt={run}", "sampler=ddpm", "sampler.variance=learned"],
     ["sampler.variance=learned: allowed only for a model trained with model.learn_sigma=true"]),
    ("evaluate.py", ["ckpt={run}", "n=1"], ["n=1", "allowed values are integers >= 2"]),
    ("evaluate.py", ["ckpt={run}", "nfe=[0]"], ["nfe=[0]", "allowed values are null or non-empty lists of integers"]),
    ("evaluate.py", ["ckpt={run}", "steps=[5]", "nfe=[10]"], ["nfe=[10]", "allowed only without steps="]),
    ("evaluate.py", ["ckpt={run}", "spacings=[cosine]"],
     ["spacings=['cosine']", "allowed values are null or non-empty lists of trailing, linspace, leading, karras"]),
    ("evaluate.py", ["ckpt={run}", "stesp=[5]"], ["stesp", "did you mean steps?", "allowed keys are"]),
    ("evaluate.py", ["ckpt={run}", "sampler=ddim"], ["sampler=ddim", "did you mean samplers=[ddim]?"]),
    # python -m diffusion_lab.viz: a config group the command does not use
    ("viz", ["ckpt={run}", "model=unet_tiny"], ["model=unet_tiny", "takes no model option", "allowed keys are ckpt"]),
    # report.py
    ("report.py", ["{outputs}/nothing-here"], ["nothing-here", "no such run or multirun directory"]),
    ("report.py", ["--bogus"], ["--bogus", "allowed options are"]),
]


MAINS = {"train.py": cli.train_main, "sample.py": cli.sample_main, "evaluate.py": cli.evaluate_main,
         "report.py": report.main, "viz": viz_main}
# Run as subprocesses too: a Hydra error, a value refused once torch is loaded (its run directory removed), a bad
# checkpoint, a typo in evaluate.py's keys, and argparse's error in report.py.
IN_A_SUBPROCESS = ["train.py trainr.max_epochs=3", "train.py T=10", "sample.py ckpt={truncated}",
                   "evaluate.py ckpt={run} stesp=[5]", "report.py --bogus"]


class Foreign:  # not plain data: a checkpoint holding it must not be unpickled
    pass


@pytest.fixture(scope="module")
def outputs(tiny_run, tmp_path_factory) -> Path:
    """A copy of a finished run in an outputs folder, and three bad checkpoints beside it."""
    root = tmp_path_factory.mktemp("outputs")
    run = root / "2026-01-01" / "00-00-00-aaaaaa"
    shutil.copytree(tiny_run, run, symlinks=True)
    ckpt_path = run / "checkpoints" / "last.ckpt"
    data = ckpt_path.read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["hyper_parameters"]["module"]["net"]["channels"] = 32  # the config no longer describes the weights
    torch.save(ckpt, root / "edited.ckpt")
    torch.save({"state_dict": {}, "payload": Foreign()}, root / "foreign.ckpt")
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def case_id(script: str, args: list[str]) -> str:
    return " ".join([script, *args])


def arguments(script: str, args: list[str], outputs: Path) -> list[str]:
    """The command line of a case, with its placeholders filled in; train.py runs write into `outputs`."""
    run = outputs / "2026-01-01" / "00-00-00-aaaaaa"
    names = {"run": run, "outputs": outputs, **{k: outputs / f"{k}.ckpt" for k in ("truncated", "edited", "foreign")}}
    args = [a.format(**names) for a in args]
    return [*TINY_TRAIN, "logger=csv", f"paths.log_dir={outputs}", *args] if script == "train.py" else args


@pytest.fixture(scope="module")
def before(outputs) -> dict[str, str]:
    """The outputs folder as it was before any bad input."""
    return snapshot(outputs)


@pytest.mark.parametrize("script,args,expected", CASES, ids=[case_id(s, a) for s, a, _ in CASES])
def test_a_bad_input_exits_with_one_line_naming_the_key(before, outputs, tiny_data, run_in_process, monkeypatch,
                                                          script, args, expected):
    monkeypatch.chdir(outputs)
    error = one_line_error(run_in_process(MAINS[script], *arguments(script, args, outputs), data=tiny_data))
    for part in expected:
        assert part in error, error


@pytest.fixture(scope="module")
def subprocess_results(before, outputs, tiny_data) -> dict[str, object]:
    """{case id: finished command} for the cases run as subprocesses, two at a time."""
    cases = [(script, args) for script, args, _ in CASES if case_id(script, args) in IN_A_SUBPROCESS]
    assert len(cases) == len(IN_A_SUBPROCESS)

    def run_case(case):
        script, args = case
        return run_cli(script, *arguments(script, args, outputs), data=tiny_data, cwd=outputs)

    with ThreadPoolExecutor(max_workers=2) as pool:  # each command spends most of its time starting Python
        return {case_id(*case): result for case, result in zip(cases, pool.map(run_case, cases))}


@pytest.mark.slow
@pytest.mark.parametrize("case", IN_A_SUBPROCESS)
def test_the_real_command_line_exits_2_with_one_line_and_no_traceback(subprocess_results, case):
    expected = {case_id(s, a): e for s, a, e in CASES}[case]
    error = one_line_error(subprocess_results[case])
    for part in expected:
        assert part in error, error


def test_bad_inputs_leave_earlier_outputs_as_they_were(outputs, before, request):
    assert len(CASES) >= 25
    if request.config.getoption("-m") != "not slow":  # with the slow tests, after the subprocess runs too
        request.getfixturevalue("subprocess_results")
    assert snapshot(outputs) == before  # nothing written, nothing changed, no run directory left behind
