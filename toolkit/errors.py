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


def storage_error(path: Path | str, exc: OSError) -> StorageError | None:
    """The one line for a write to `path` that failed with `exc`, where the disk is to blame;
    None for any other failure."""
    if exc.errno not in STORAGE_ERRNOS:
        return None
    folder = Path(path).parent
    fix = ("make it writable or give another folder" if exc.errno == errno.EROFS
           else "free space there")
    return StorageError(f"cannot write {path}: {exc.strerror or exc} ({folder}: {fix}); what "
                        f"finished before is kept, and --resume goes on from it")
