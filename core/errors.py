"""Errors meant for people: the entry points print these as one message and exit non-zero."""


class UserError(Exception):
    """Bad input or configuration; the message names the offending value and what is accepted."""


class ConfigError(UserError, ValueError):
    """A configuration value is unknown or inconsistent."""


class DataError(UserError, ValueError):
    """An input file or data set is missing, unreadable or inconsistent."""
