"""The one exception type that the command-line entry points turn into a one-line message."""


class ConfigError(ValueError):
    """A configuration value a run cannot use; the message names the key and the allowed values."""
