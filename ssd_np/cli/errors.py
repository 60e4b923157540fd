"""Exit statuses and the user-mistake exception shared by every `ssd-np` command.

Exit status: 0 success; 1 the job ran but something failed (an image could not be processed, a comparison
exceeded its tolerance); 2 bad usage or bad input (unreadable file, wrong weights, unwritable output).
"""
from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A user's mistake: printed as one line `ssd-np: error: ...`, exit status 2."""
