"""Errors a user can act on. Each message names the key, column or path at fault."""


class SampleMixError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(SampleMixError):
    """A configuration key is unknown, missing or out of range."""


class InputError(SampleMixError):
    """The source data cannot be processed as configured (missing column, no files, ...)."""


class TableError(SampleMixError):
    """A table the stage needs is missing, or the engine cannot write the configured format."""
