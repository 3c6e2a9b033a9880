"""What a run made, known by its SHA-256: nothing is loaded that the run did not make.

A results folder travels (a CI artifact, a colleague's run, a cluster node's copy), and the
paths in its results.json are data, not a grant of trust. So each file a step makes and a later
step loads (the built model, its ONNX file, the inputs, the reference outputs, the calibration
rows) is hashed where its step ends, the digest kept in its records (`info["sha256"]`), and
checked before any later step hands the file to a child: on `--resume`, on a cluster node, in a
recipe made from it. A file that changed is one line naming it, and nothing is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from toolkit.errors import BadInputError
from toolkit.results import Record

KEY = "sha256"  # where a record keeps the digests of the files it names: {role: hex digest}
# the files records name, by role (the key of `info` that holds the path): digests are kept by
# role, not path, as a cluster node reads the same records with its own copies' paths
ROLES = ("artifact", "onnx", "inputs", "reference", "calibration")
# formats whose loading runs code the file carries: never loaded without a recorded digest
PICKLES = (".pth", ".joblib", ".pkl", ".pickle")


class TamperedError(BadInputError):
    """A file a run made is not what it made."""


def sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def stamp(records: Sequence[Record]) -> list[Record]:
    """`records` with the digest of each file they name (that exists) in `info["sha256"]`."""
    out = []
    for record in records:
        found = {role: sha256(Path(record.info[role])) for role in ROLES
                 if isinstance(record.info.get(role), str) and Path(record.info[role]).is_file()}
        out.append(dataclasses.replace(record, info={**record.info, KEY: found})
                   if found else record)
    return out


def follow(digests: Mapping[str, str | None], record: Record) -> dict[str, str | None]:
    """`digests` (by role) after `record`: a role it names a file for takes its digest (None
    where it kept none), as the file's path does."""
    kept = record.info.get(KEY)
    kept = kept if isinstance(kept, Mapping) else {}
    return {**digests, **{role: (str(kept[role]) if role in kept else None)
                          for role in ROLES if role in record.info}}


def check(files: Mapping[str, str | None], digests: Mapping[str, str | None],
          folder: Path) -> None:
    """TamperedError for the first file (by role) whose content is not its recorded digest, or
    that is a pickle with none recorded or that cannot be found; a relative path is read from
    `folder` (the run's, where the child runs), and other missing files are left to the step."""
    for role, name in files.items():
        if not name:
            continue
        path = Path(name) if Path(name).is_absolute() else folder / name
        pickle = path.suffix.lower() in PICKLES
        if not path.is_file():
            if pickle:
                raise TamperedError(f"{name}: not found, and a pickle is loaded only where "
                                    f"its SHA-256 can be checked first; run it again into a "
                                    f"new folder")
            continue
        expected = digests.get(role)
        if expected is None:
            if pickle:
                raise TamperedError(
                    f"{path}: no SHA-256 was recorded for it when it was made (a folder from "
                    f"before deploybench recorded them, or one edited since), and loading a "
                    f"pickle runs code: nothing was loaded; run it again into a new folder")
            continue
        if sha256(path) != expected:
            raise TamperedError(
                f"{path}: its SHA-256 is not the one recorded when this run made it "
                f"({expected[:16]}...): the file changed since, and nothing was loaded from "
                f"it; run again into a new folder, or restore the file")
