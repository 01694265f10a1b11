"""The exception types that the command-line entry points turn into a one-line message (see cli.error_line)."""


class ConfigError(ValueError):
    """A configuration value a run cannot use; the message names the key and the allowed values."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where, and what was kept."""
