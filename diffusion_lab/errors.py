"""The errors a user can fix, and how every command reports them: one `error: <message>` line, exit status 2
(bad input), 3 (training went wrong) or 4 (a file could not be written), no traceback."""

import difflib
import os
import re
import sys
from collections.abc import Mapping, Sequence
from contextlib import contextmanager

from diffusion_lab.interrupts import Interrupted


class ConfigError(ValueError):
    """A configuration value a run cannot use; the message names the key and the allowed values."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where, and what was kept."""


class StorageError(OSError):
    """A file could not be written (a full disk, a read-only folder); the message names it and the space needed.
    Whatever was there before is left whole (see `files.write_atomic`)."""


EXIT_STATUS = {ConfigError: 2, TrainingError: 3, StorageError: 4}


def is_first_process() -> bool:
    """Whether this is the first (or only) process of its job: not a DDP child, nor a later SLURM or torchrun task."""
    return all(os.environ.get(key, "0") == "0" for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def causes(err: BaseException):
    """`err` and the exceptions it was raised from or during, innermost last."""
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def error_line(err: BaseException, command_keys: Mapping | None = None) -> tuple[str, int] | None:
    """(one-line message, exit status) for the errors a user can fix from the command line, else None: ours,
    a missing mandatory value, and Hydra's (unknown key, unknown group option, a config group the command does
    not use, unparsable override). `command_keys`, the command's own top-level keys and their defaults, give
    the last of these its "did you mean"."""
    # Hydra's and OmegaConf's exception types, imported only here: the maths and the network raise
    # ConfigError too, and stay importable without Hydra.
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

    for cause in causes(err):
        for kind, status in EXIT_STATUS.items():
            if isinstance(cause, kind):
                return str(cause), status
        if isinstance(cause, MissingMandatoryValue):
            return f"{cause.full_key}: missing; give {cause.full_key}=<value>", 2
        if isinstance(cause, MissingConfigException) and cause.options:
            group, _, choice = (cause.missing_cfg_file or "").rpartition("/")
            return f"{group}={choice}: no such option; allowed values are {', '.join(cause.options)}", 2
        if isinstance(cause, ConfigCompositionException) and (group := _unused_group(str(cause))):
            return _unused_group_line(*group, command_keys or {}), 2
        if isinstance(cause, OverrideParseException):
            reason = cause.message.splitlines()[1 if cause.message.startswith("Error parsing") else 0]
            return f"{cause.override}: cannot parse this override ({reason}); write key=value", 2
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.parent_node is not None and cause.key is not None:
            override = re.search(r"'([^']+)'", str(err)) if isinstance(err, ConfigCompositionException) else None
            allowed = [k for k in cause.parent_node.keys() if k not in ("hydra", "_target_", "_partial_")]
            near = difflib.get_close_matches(str(cause.key), allowed, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            return (f"{override.group(1) if override else cause.full_key}: unknown key {cause.key!r}{hint}; "
                    f"allowed keys are {', '.join(allowed)}"), 2
    return None


def _unused_group(message: str) -> tuple[str, str] | None:
    """(group, option) of Hydra's "Could not override '<group>'. No match in the defaults list."."""
    found = re.match(r"Could not override '([^']+)'\. No match in the defaults list", message)
    option = re.search(r"use \+\S+?=(\S+)", message)
    return (found.group(1), option.group(1) if option else "...") if found else None


def _unused_group_line(group: str, option: str, command_keys: Mapping) -> str:
    near = difflib.get_close_matches(group, list(command_keys), n=1)
    hint = ""
    if near:
        value = f"[{option}]" if isinstance(command_keys[near[0]], Sequence) and not isinstance(
            command_keys[near[0]], str) else option
        hint = f" (did you mean {near[0]}={value}?)"
    allowed = f"; allowed keys are {', '.join(command_keys)}" if command_keys else ""
    return f"{group}={option}: this command takes no {group} option{hint}{allowed}"


@contextmanager
def one_line_errors(command_keys: Mapping | None = None):
    """Turn an error a user can fix (see `error_line`) into `error: <message>` on stderr and a non-zero exit
    status (2: a bad input, 3: training went wrong, 4: a file could not be written), and a stop on a signal (`interrupts.Interrupted`) into its
    one line and 128 + the signal's number; anything else keeps its traceback."""
    try:
        yield
    except Interrupted as stop:
        if is_first_process():  # one line, not one per process
            print(stop.message, file=sys.stderr)
        raise SystemExit(stop.code) from None
    except Exception as err:
        found = error_line(err, command_keys)
        if found is None:
            raise
        print(f"error: {found[0]}", file=sys.stderr)
        raise SystemExit(found[1]) from None
