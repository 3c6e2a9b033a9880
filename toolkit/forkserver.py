"""A warm process that has imported a runtime once and forks a fresh child for each step.

Importing TensorFlow or PyTorch takes seconds, and a run starts a child per case per round, so a
suite could spend much of its time importing. A fork server imports the runtime once
(`RUNNERS[name].import_framework`, the same call a measuring child times), then forks a child
per step; the child runs `toolkit.worker`'s `main` as a spawned one would, with its own log,
session and process group. What it does not redo is the import: a measuring child reports the
import time the server measured (`toolkit.preloaded`, one figure for the run; its record says
so).

Protocol, one JSON object per line: the server says {"ready": ..., "import_seconds": s}; each
request {"spec", "out", "log", "cwd"} is answered {"pid": p} when the child starts and
{"status": code} when it ends (a negative code: killed by that signal). The server ends when
its standard input closes: the process that started it is gone.

This module is the server process (`python -m toolkit.forkserver RUNNER`); the asking side,
which keeps the servers and turns a step into a request, is `toolkit.forking`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
from typing import Any

from toolkit.preloaded import PRELOADED


def _child(request: dict[str, Any], server: int) -> int:
    """In the forked child: become a fresh step process, run the step, return its exit code."""
    os.setsid()
    _die_with(server)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.chdir(request["cwd"])
    _trim_heap()
    random.seed()  # not the server's state: each child draws its own
    import numpy as np

    np.random.seed()
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    from toolkit.worker import main

    return main([request["spec"], request["out"]])


def _die_with(server: int) -> None:
    """Be killed when the server dies (Linux), as the asker kills the server when it gives up
    on it: a child in a session of its own would otherwise outlive both."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != server:  # it died before the call above
        os._exit(1)


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc), so that a child's allocations
    show in its resident memory as a fresh process's would, instead of reusing pages the
    server's imports left resident."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def serve(runner: str) -> None:
    """The server's loop (see the module's text). Replies go to a copy of the standard output
    taken first; the standard output itself then points at the standard error, so whatever an
    import prints cannot be read as a reply."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    from toolkit.runners import RUNNERS
    from toolkit.timing import time_once

    seconds = time_once(RUNNERS[runner].import_framework)
    PRELOADED[runner] = seconds  # what its children report
    import toolkit.steps  # noqa: F401  the step code every child runs

    _trim_heap()
    reply.write(json.dumps({"ready": runner, "import_seconds": seconds}) + "\n")
    reply.flush()
    server = os.getpid()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                reply.close()
                code = _child(request, server)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
        _, status = os.waitpid(pid, 0)
        reply.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        reply.flush()


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m toolkit.forkserver RUNNER")
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):  # the asker is gone
        serve(sys.argv[1])


if __name__ == "__main__":
    main()
