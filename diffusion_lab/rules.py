"""The values a user may set, each rule written once: a predicate and the words that say what it allows.

The start-up checks of a composed config (`config_checks`) apply these rules before torch is imported, and the
classes and functions that use a value apply the same rule to their arguments, so a value refused on the
command line is refused with the same one line from Python. Plain Python only.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from diffusion_lab.errors import ConfigError

PREDICTIONS = ("eps", "x0", "v")  # what the network predicts
LOSS_WEIGHTINGS = ("none", "min_snr")
LR_SCHEDULES = ("constant", "cosine")  # after the warm-up: constant, or a cosine to zero at the end of the budget
TIME_SPACINGS = ("trailing", "linspace", "leading")  # which timesteps a K-step sampler visits, in t
SIGMA_SPACINGS = ("karras", "exponential", "log_snr")  # … or in σ, between the trained timesteps
SPACINGS = TIME_SPACINGS + SIGMA_SPACINGS
SOLVER_ORDERS = (2, 3)  # DPM-Solver++ 2M/3M, UniPC-2/3
DPM_ALGORITHMS = ("dpmsolver++", "sde-dpmsolver++")
FIXED_VARIANCES = ("fixed_small", "fixed_large")  # ancestral sampling's σ²: β̃ or β
VARIANCES = ("auto", "learned") + FIXED_VARIANCES  # auto: learned for a model.learn_sigma model, else fixed_small
LOSSES = ("simple", "hybrid", "vlb")  # L_simple, L_simple + λ·L_vlb, L_vlb (Nichol & Dhariwal 2021)
T_SAMPLERS = ("auto", "uniform", "importance")  # how training draws t; auto: importance for loss=vlb
DATASETS = ("mnist", "fashion_mnist")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")


def show(value: Any) -> str:
    """A value as a user wrote it: strings quoted, lists (OmegaConf's too) as [a, b]."""
    if isinstance(value, Mapping):
        return repr(dict(value))
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return repr([*value])
    return repr(value)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_list(v: Any) -> bool:
    return isinstance(v, Iterable) and not isinstance(v, (str, bytes, Mapping))


@dataclass(frozen=True)
class Allowed:
    """A predicate on a value with the words that describe what it accepts."""

    test: Callable[[Any], bool]
    words: str

    def check(self, key: str, value: Any) -> None:
        if not self.test(value):
            raise ConfigError(f"{key}={show(value)}: allowed values are {self.words}")


def _or(words: str, special: tuple) -> str:
    return words + "".join(f" or {a}" for a in special)


def integer(lo: int, hi: int | None = None, special: tuple = ()) -> Allowed:
    """Integers lo..hi (no upper bound when hi is None), or one of the `special` values (e.g. -1, None)."""
    words = f"integers >= {lo}" if hi is None else f"integers {lo}..{hi}"
    return Allowed(lambda v: v in special or (is_int(v) and lo <= v and (hi is None or v <= hi)), _or(words, special))


def number(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
           special: tuple = ()) -> Allowed:
    """Numbers from lo (excluded when lo_open) to hi (excluded when hi_open), or one of the `special` values."""
    def test(v):
        if v in special and not isinstance(v, bool):
            return True
        return (is_number(v) and (v > lo if lo_open else v >= lo)
                and (hi is None or (v < hi if hi_open else v <= hi)))

    words = f"numbers {'>' if lo_open else '>='} {lo:g}" + (
        f" and {'<' if hi_open else '<='} {hi:g}" if hi is not None else "")
    return Allowed(test, _or(words, special))


def one_of(*values) -> Allowed:
    return Allowed(lambda v: any(v == a and type(v) is type(a) for a in values), ", ".join(map(str, values)))


def list_of(item: Allowed, non_empty: bool = False) -> Allowed:
    """Lists whose every entry `item` allows (at least one entry when `non_empty`)."""
    return Allowed(lambda v: is_list(v) and (len([*v]) > 0 or not non_empty) and all(item.test(x) for x in v),
                   f"{'non-empty ' if non_empty else ''}lists of {item.words}")


ANY = Allowed(lambda v: True, "any value")  # said explicitly: a key whose every value is fine (a name, a tag)
TEXT = Allowed(lambda v: isinstance(v, str), "strings")
OPTIONAL_TEXT = Allowed(lambda v: v is None or isinstance(v, str), "null or strings")
PATH = Allowed(lambda v: isinstance(v, str) and v.strip() != "", "non-empty paths")
OPTIONAL_PATH = Allowed(lambda v: v is None or PATH.test(v), "null or non-empty paths")
TARGET = Allowed(lambda v: isinstance(v, str) and all(p.isidentifier() for p in v.split(".")) and "." in v,
                 "dotted import paths (package.module.Name)")
BOOLEAN = one_of(True, False)
DURATION = Allowed(lambda v: v is None or (isinstance(v, str) and len(v.split(":")) == 4
                                           and all(p.isdigit() for p in v.split(":"))), "null or DD:HH:MM:SS")
DEVICES = Allowed(lambda v: v == "auto" or (is_int(v) and v >= 1) or v == -1
                  or (is_list(v) and len([*v]) > 0 and all(is_int(d) and d >= 0 for d in v)),
                  "integers >= 1, -1 (all), auto, or a list of device indices")
ACCELERATOR = one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu")

# The rules that the classes and functions of the package apply to their own arguments too.
T = integer(1)  # diffusion steps
# The U-Net (models.UNet)
IMAGE_CHANNELS = integer(1)
IMAGE_SIZE = integer(1)
WIDTH = integer(1)  # model.channels, the base width
CHANNEL_MULTS = list_of(integer(1), non_empty=True)  # one width multiplier per resolution
RES_BLOCKS = integer(1)
ATTENTION_RESOLUTIONS = list_of(integer(1))  # feature-map widths (pixels) with self-attention
DROPOUT = number(0, 1, hi_open=True)
NORM_GROUPS = integer(1)
NUM_CLASSES = integer(2, special=(None,))
# The noise schedules (diffusion.schedules)
BETA = number(0, 1, lo_open=True, hi_open=True)  # a linear schedule's beta_start, beta_end
MAX_BETA = number(0, 1, lo_open=True, hi_open=True)  # the clip of the cosine and sigmoid schedules
COSINE_OFFSET = number(0)  # Nichol & Dhariwal's s
SIGMOID_TAU = number(0, lo_open=True)
SIGMOID_END = number(-1e6, 1e6)  # start and end of the sigmoid's input; end > start
MIN_SNR_GAMMA = number(0, lo_open=True)
PREDICTION = one_of(*PREDICTIONS)
LOSS_WEIGHTING = one_of(*LOSS_WEIGHTINGS)
LR_SCHEDULE = one_of(*LR_SCHEDULES)
SPACING = one_of(*SPACINGS)
TIME_SPACING = one_of(*TIME_SPACINGS)
SOLVER_ORDER = one_of(*SOLVER_ORDERS)
DPM_ALGORITHM = one_of(*DPM_ALGORITHMS)
CHURN = number(0)  # Karras et al.'s S_churn, S_tmin, S_tmax, S_noise
PERCENTILE = number(0, 1, lo_open=True, hi_open=True, special=(None,))  # dynamic thresholding's p; null: off
NFE = integer(1, special=(None,))  # network evaluations per image a setting may spend; null: use the steps
VARIANCE = one_of(*VARIANCES)
LOSS = one_of(*LOSSES)
VLB_WEIGHT = number(0, lo_open=True)  # λ of L_hybrid
T_SAMPLER = one_of(*T_SAMPLERS)
BPD_IMAGES = integer(0)  # test images behind val/bpd; 0: off
BPD_TIMESTEPS = integer(1)  # strata of t behind val/bpd
DATASET = one_of(*DATASETS)
ETA = number(0, 1)  # DDIM's η
EMA_DECAY = number(0, 1, hi_open=True)
EMA_GAMMA = number(0, lo_open=True, special=(None,))  # the power-function EMA's γ; null: the decay
GUIDANCE_SCALE = number(0)
BATCH_SIZE = integer(1)
IMAGE_COUNT = integer(1)  # images to draw
SCORED_COUNT = integer(2)  # images to score: FID needs two
EVERY_N_EPOCHS = integer(1)
RESAMPLES = integer(0)  # bootstrap replicates behind a confidence interval; 0: none
TIME_BUDGET = number(0, lo_open=True, special=(None, "auto"))  # seconds for the sampling after training


def check_step_counts(key: str, steps: Any, T: int) -> None:
    """Every sampling step count in `steps` (an int or a list) is an integer in 1..T."""
    values = [*steps] if is_list(steps) else [steps]
    bad = [s for s in values if not (is_int(s) and 1 <= s <= T)]
    if bad:
        raise ConfigError(f"{key}={show(steps)}: {', '.join(map(repr, bad))} not allowed; step counts are "
                          f"integers 1..T={T}")


def check_terminal_snr(prediction: Any, zero_terminal_snr: bool) -> None:
    """A zero-terminal-SNR schedule needs a network that predicts v or x_0: at ᾱ_T = 0, x_T is ε itself, so an
    ε-prediction tells nothing of x_0 there (Lin et al. 2024, §3.2)."""
    if zero_terminal_snr and prediction == "eps":
        raise ConfigError("prediction='eps': allowed values with schedule.zero_terminal_snr=true are v, x0 "
                          "(at alphas_cumprod[T-1] = 0 an ε-prediction cannot give x_0)")


def check_loss(learn_sigma: Any, loss: Any, loss_weighting: Any) -> None:
    """Learned variances need a loss that trains them, L_hybrid needs learned variances (its L_vlb term trains
    only them), and the loss weighting weights L_simple, which L_vlb alone has not."""
    if learn_sigma is True and loss == "simple":
        raise ConfigError("model.learn_sigma=true: allowed with loss=hybrid or loss=vlb (L_simple gives the "
                          "variances no gradient)")
    if loss == "hybrid" and learn_sigma is not True:
        raise ConfigError("loss=hybrid: allowed only with model.learn_sigma=true (its L_vlb term trains the "
                          "variances alone); allowed losses for fixed variances are simple, vlb")
    if loss == "vlb" and loss_weighting not in ("none", None):
        raise ConfigError(f"loss_weighting={loss_weighting}: allowed with loss=vlb is none (the weighting is of "
                          "L_simple, which loss=vlb has not)")
