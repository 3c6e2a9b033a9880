"""Errors a user can act on.

    DeploybenchError            base: the CLI prints `error: <message>` and exits 2
    +-- BadInputError           a flag, value or file the user gave is wrong (names it and the fix)
    +-- ExportFailedError       an exporter could not turn a native model into ONNX
    +-- ProviderUnavailableError  an ONNX Runtime provider was asked for and cannot run here

Anything else escaping to the CLI is a bug and shows a traceback.
"""

from __future__ import annotations


class DeploybenchError(Exception):
    """Base class for errors whose message tells the user what to do."""


class BadInputError(DeploybenchError):
    """A flag, value or file given by the user is not usable."""


class ExportFailedError(DeploybenchError):
    """An exporter failed; the message carries the exporter's own words."""


class ProviderUnavailableError(DeploybenchError):
    """An execution provider was requested but the session did not run on it."""
