"""The error every tool turns into exit status 1 with its message."""


class InputError(Exception):
    """A missing or unreadable input (a run's file, an eval output); the message names the file."""
