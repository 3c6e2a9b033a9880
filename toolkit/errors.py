"""Errors a user can act on.

    DeploybenchError            base: the CLI prints `error: <message>` and exits 2
    +-- BadInputError           a flag, value or file the user gave is wrong (names it and the fix)
    +-- ExportFailedError       an exporter could not turn a native model into ONNX
    +-- ProviderUnavailableError  an ONNX Runtime provider was asked for and cannot run here
    +-- StorageError            a folder cannot take a file: the disk is full, or read-only

Anything else escaping to the CLI is a bug and shows a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path


class DeploybenchError(Exception):
    """Base class for errors whose message tells the user what to do."""


class BadInputError(DeploybenchError):
    """A flag, value or file given by the user is not usable."""


class ExportFailedError(DeploybenchError):
    """An exporter failed; the message carries the exporter's own words."""


class ProviderUnavailableError(DeploybenchError):
    """An execution provider was requested but the session did not run on it."""


class StorageError(DeploybenchError):
    """A file could not be written for want of space or of a writable disk; what was written
    before it stands."""


# write errors that are the disk's, not the program's: no space, over a quota, a read-only
# filesystem, over the size a process may write
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


STORAGE_EXIT = 4  # a child's exit code where it could not write for want of space
STORAGE_SAID = "deploybench storage: "  # the line a child leaves in its log, before that exit


def storage_error(path: Path | str | None, exc: OSError) -> StorageError | None:
    """The one line for a write to `path` (None: not known) that failed with `exc`, where the
    disk is to blame; None for any other failure."""
    if exc.errno not in STORAGE_ERRNOS:
        return None
    where = f"cannot write {path}" if path else "a write failed"
    folder = f"{Path(path).parent}: " if path else ""
    fix = {errno.EROFS: "make it writable or write elsewhere",
           errno.EFBIG: "a file grew past the size this process may write (ulimit -f)",
           }.get(exc.errno, "free space there")
    return StorageError(f"{where}: {exc.strerror or exc} ({folder}{fix}); what was written "
                        f"before stands (a run goes on from it with --resume)")
