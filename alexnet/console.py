"""What a user sees: the library logs, and one handler turns the records into the lines of the console.

Library modules log through `logging.getLogger(__name__)` (children of the
"alexnet" logger) and never print, as timm and torchvision's reference scripts
do. `setup` installs the console handler: progress and results (INFO) go to
stdout as they are; notes (a choice made for the user), warnings and errors go
to stderr as "note: ...", "warning: ...", "error: ...". With quiet=True only
warnings and errors are shown, and Keras's progress bars are off.

The CLI calls `setup`; the Python entry points (`train`, `evaluate`, ...) call
`ensure_setup`, which installs the same handler unless the caller has given the
"alexnet" logger a handler of their own. `native_logs_filtered` keeps the C++
log lines of TensorFlow, XLA and JAX off the console.
"""

import contextlib
import logging
import os
import re
import sys
import threading

NOTE = 25  # between INFO and WARNING: a choice the tool made for the user (stderr, "note: ...")
LOGGER = "alexnet"
_PREFIXES = {NOTE: "note: ", logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


class ConsoleHandler(logging.Handler):
    """INFO and below to stdout as they are; notes, warnings and errors to stderr with their prefix.

    The streams are looked up for every record, so a redirected or captured
    `sys.stdout` (a notebook, pytest) gets the lines.
    """

    def emit(self, record):
        try:
            message = self.format(record)
            if record.levelno >= NOTE:
                stream, message = sys.stderr, _PREFIXES.get(record.levelno, "") + message
            else:
                stream = sys.stdout
            stream.write(message + "\n")
            stream.flush()
        except Exception:  # as logging.StreamHandler does: a broken stream must not end the run
            self.handleError(record)


def setup(quiet=False):
    """Installs the console handler on the "alexnet" logger (replacing an earlier one of ours).

    Args:
        quiet: show warnings and errors only.
    """
    logging.addLevelName(NOTE, "NOTE")
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(ConsoleHandler())
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False  # the lines are shown once, by this handler


def ensure_setup():
    """Installs the console handler unless the "alexnet" logger already has a handler (the caller's or ours)."""
    if not logging.getLogger(LOGGER).handlers:
        setup()


def quiet():
    """Whether INFO lines are hidden (then Keras's progress bars are off too)."""
    return not logging.getLogger(LOGGER).isEnabledFor(logging.INFO)


def keras_verbosity():
    """`verbose` for Keras's fit and Progbar: a bar on a terminal, one line per epoch into a file, none when quiet."""
    if quiet():
        return 0
    return 1 if sys.stdout.isatty() else 2


def note(logger, message, *args):
    """Logs a note: a choice made for the user that they may want to change ("note: ..." on stderr)."""
    logger.log(NOTE, message, *args)


# A line of TensorFlow's, XLA's or JAX's C++ logging (absl format: "E0000 00:00:1795862049.131149   31933 file.cc:52] ...")
# or of absl's preamble; no setting from inside the process hides them in TensorFlow 2.21.
_NATIVE_LOG = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] |WARNING: All log messages before "
                         rb"absl::InitializeLog|To enable the following instructions: )")


@contextlib.contextmanager
def native_logs_filtered():
    """Drops C++ log lines (`_NATIVE_LOG`) written to file descriptor 2 for the duration; passes all else on.

    Native libraries write to the descriptor, not to `sys.stderr`, so the
    descriptor is pointed at a pipe that a thread reads: lines of C++ logging
    are dropped, anything else (Python warnings, errors, our notices, a crash
    report) goes to the real stderr as it comes, a partial line with a carriage
    return (a progress bar) at once.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def pump():
        pending, passing = b"", False
        while chunk := os.read(read, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if passing or not _NATIVE_LOG.match(line):
                    os.write(saved, line + b"\n")
                passing = False
            if pending and (passing or b"\r" in pending):
                os.write(saved, pending)
                pending, passing = b"", True
        if pending and not _NATIVE_LOG.match(pending):
            os.write(saved, pending)
        os.close(read)

    thread = threading.Thread(target=pump, name="native-log-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the thread reads to the end and stops
        thread.join(timeout=5)  # a child process may still hold the pipe; then the thread is left behind
        os.close(saved)
