"""Exit statuses and the user-mistake exception shared by every `ssd-np` command.

Exit status: 0 success; 1 the job ran but something failed (an image could not be processed, a comparison
exceeded its tolerance); 2 bad usage or bad input (unreadable file, wrong weights, unwritable output);
128 + the signal number when stopped by a signal, as a shell reports it: 130 Ctrl-C (SIGINT), 141 stdout
closed by the reader (SIGPIPE), 143 SIGTERM.
"""
from __future__ import annotations

import signal

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT, so cleanup code runs."""


def os_error_text(e: OSError) -> str:
    """`<file>: <reason>` for an OSError; the file is always named when the error knows it."""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {reason}" if e.filename is not None else reason


def not_written(e: OSError, lost: str) -> CliError:
    """The error for an output file that could not be written (disk full, read-only...), saying what is lost."""
    return CliError(f"{os_error_text(e)}; {lost} not written (a file already there is unchanged); free some "
                    f"space or choose another place, and run again")


class CliError(Exception):
    """A user's mistake: printed as one line `ssd-np: error: ...`, exit status 2."""


class EvalError(ValueError):
    """Bad input to `ssd-np eval` (missing images, bad options); bad annotations or results raise
    `coco_eval.CocoError` naming the file, the entry and the field."""
