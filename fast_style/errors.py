"""The exception types that the command line turns into one-line messages, and their exit codes."""

import re

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "FastStyleError",
    "RunFailed",
    "one_line",
]

EXIT_OK = 0
EXIT_FAILED = 1  # a failure during the work (disk full, non-finite loss, ...)
EXIT_USAGE = 2  # bad input, found before any work started
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colour codes, e.g. in torch.load's messages


class FastStyleError(Exception):
    """A problem the user can fix (bad path, bad file, bad setting); printed without a traceback."""

    exit_code = EXIT_USAGE


class RunFailed(FastStyleError):
    """A failure during the work itself, after the input was accepted; exit code 1."""

    exit_code = EXIT_FAILED


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """``exc`` (an exception or a message) as one line: an exception's type when it has no text, control characters and line breaks removed."""
    text = _ANSI.sub("", str(exc))
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if not text and isinstance(exc, BaseException):
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
