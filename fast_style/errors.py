"""The one exception type that the command line turns into a one-line message."""

__all__ = ["FastStyleError"]


class FastStyleError(Exception):
    """A problem the user can fix (bad path, bad file, bad setting); printed without a traceback."""
