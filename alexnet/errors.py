"""The three kinds of failure the CLI reports, each with its exit status."""


class AlexnetError(Exception):
    """A runtime failure with a message fit for the user (exit status 1)."""

    exit_code = 1


class UsageError(AlexnetError, ValueError):
    """A bad flag, path, setting or argument: the user must change the command or call (exit status 2).

    Also a ValueError, which is what Python callers expect for a bad argument.
    """

    exit_code = 2


class Interrupted(AlexnetError):
    """Ctrl-C, or a stop signal (SIGTERM, SIGUSR1); what was saved is kept.

    Exit status 130 for Ctrl-C (SIGINT) and 143 for the stop signals (128 + SIGTERM's 15, what a scheduler's
    preemption expects of a process that stopped on its SIGTERM).
    """

    exit_code = 130

    def __init__(self, message, exit_code=130):
        super().__init__(message)
        self.exit_code = exit_code


class StopNow(KeyboardInterrupt):
    """A second Ctrl-C or stop signal: stop at once, with the exit status of the first (130 or 143)."""

    def __init__(self, exit_code=130):
        super().__init__()
        self.exit_code = exit_code


def check_choice(flag, value, allowed):
    """Returns `value` if it is one of `allowed`; else raises UsageError, the one wording of that error."""
    if value not in allowed:
        raise UsageError(f"{flag} must be one of {', '.join(allowed)}. Received: {value!r}")
    return value
