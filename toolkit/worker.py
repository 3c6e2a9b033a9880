"""Child-process entry: `python -m toolkit.worker SPEC.json OUT.jsonl`.

Runs one step (see `toolkit.steps`) and writes each record as one JSON line, flushed at once, so
a crash loses only the record being made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

from toolkit.errors import STORAGE_EXIT, STORAGE_SAID, BadInputError, storage_error
from toolkit.steps import run_task

BAD_INPUT_EXIT = 3


def main(argv: list[str]) -> int:
    import toolkit

    print(f"deploybench code: {Path(toolkit.__file__).resolve().parent}", file=sys.stderr,
          flush=True)
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    try:
        with out_path.open("a", encoding="utf-8") as out:
            try:
                for record in run_task(spec):
                    out.write(json.dumps(record.to_dict(), default=str) + "\n")
                    out.flush()
            except BadInputError as exc:  # the user's file or data: the parent says so
                out.write(json.dumps({"bad_input": str(exc)}) + "\n")
                return BAD_INPUT_EXIT
    except OSError as exc:  # a full disk is the run's to stop, not this step's to fail
        found = storage_error(exc.filename or out_path, exc)
        if found is None:
            raise
        with contextlib.suppress(OSError):  # the log may be on the full disk too
            print(STORAGE_SAID + str(found), file=sys.stderr, flush=True)
        return STORAGE_EXIT
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(main(sys.argv[1:]))
