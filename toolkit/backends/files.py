"""How files travel between the driver and a node that shares no disk with it.

The driver holds every file a step reads: the user's model, inputs and calibration rows, and what
earlier steps made (build artifacts, recipe files). A node gets them by content (a digest) into a
folder of its own, `NodeFolder`: files of the run's folder at the same place under its `run/`
folder, other files under `run/shipped/<digest>/<name>`. Paths inside a step and the records it
reads are rewritten to the node's copies (`relocate`), and back again in the records it makes.
What the step wrote there (its log, LoadGen logs, made files) is read back (`written`) and the
driver writes it into its own results folder (`receive`). No node reads or creates a driver
path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from toolkit.digests import TamperedError, sha256
from toolkit.results import Record

SHIPPED = "shipped"  # where a node keeps files from outside the run's folder


def expand(paths: Iterable[str]) -> list[Path]:
    """The files named by `paths` (a folder: every file under it, a SavedModel); paths that do
    not exist are left out (a step says so itself when it cannot find its file)."""
    out: list[Path] = []
    for name in dict.fromkeys(paths):
        path = Path(name)
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file())
    return out


class Store:
    """The driver's side: each file put into the object store once per content (`put` is
    `ray.put`), found again by path, size and modification time."""

    def __init__(self, put: Callable[[bytes], Any]) -> None:
        self._put = put
        self._by_stat: dict[tuple[str, int, int], str] = {}
        self._refs: dict[str, Any] = {}

    def ship(self, paths: Iterable[str]) -> dict[str, tuple[str, Any]]:
        """driver path -> (digest, object reference) for every file `paths` name."""
        out = {}
        for path in expand(paths):
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            digest = self._by_stat.get(key)
            if digest is None:
                digest = sha256(path)
                self._by_stat[key] = digest
            if digest not in self._refs:
                self._refs[digest] = self._put(path.read_bytes())
            out[str(path)] = (digest, self._refs[digest])
        return out


def run_root(run_key: str) -> Path:
    """The folder of one run's node folders on this machine, under a folder of the node's
    user's own."""
    return Path(tempfile.gettempdir()) / f"deploybench-nodes-{os.getuid()}" / run_key


def node_root(run_key: str, node_id: str) -> Path:
    """A node's folder for one run (one per node, so two nodes on one machine keep apart)."""
    return run_root(run_key) / node_id[:12]


def remove_node_folders(run_key: str) -> int:
    """On a node: remove every node folder of the run `run_key` there (one per node of it on
    this machine), and the run's folder; how many were removed."""
    run = run_root(run_key)
    if not run.is_dir() or run.is_symlink() or run.lstat().st_uid != os.getuid():
        return 0
    found = [p for p in run.iterdir() if p.is_dir() and not p.is_symlink()]
    for folder in found:
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # a node of this run still writing: left to it
        run.rmdir()
    return len(found)


class NodeFolder:
    """A node's side: its copies of the driver's files (`cas/` by digest, placed under `run/`),
    in a folder only its user can enter (0700). A copy found there is used only where its
    content still hashes to the digest it is filed under."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run"
        self.cas = root / "cas"
        private(root)
        self.run.mkdir(parents=True, exist_ok=True)
        self.cas.mkdir(parents=True, exist_ok=True)

    def local_path(self, driver_path: str, driver_out: str, digest: str) -> Path:
        path = Path(driver_path)
        try:
            return self.run / path.relative_to(driver_out)
        except ValueError:
            return self.run / SHIPPED / digest[:16] / path.name

    def place(self, files: Mapping[str, tuple[str, Any]], driver_out: str,
              get: Callable[[Any], bytes]) -> dict[str, str]:
        """Write the files this node lacks; the driver path -> node path of each, and of the
        driver's results folder."""
        mapping = {driver_out: str(self.run)}
        for driver_path, (digest, reference) in files.items():
            stored = self.cas / digest
            if not (stored.is_file() and sha256(stored) == digest):  # missing, or not its own
                data = get(reference)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise TamperedError(f"{driver_path}: the copy this node was sent does not "
                                        f"hash to its digest {digest[:16]}...: not used")
                _write(stored, data)
            target = self.local_path(driver_path, driver_out, digest)
            if not (target.is_file() and sha256(target) == digest):  # new, or changed
                _write(target, stored.read_bytes())
            mapping.setdefault(driver_path, str(target))
        return mapping

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(self.run)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in self.run.rglob("*") if p.is_file() and not _shipped(p, self.run)}

    def written(self, before: Mapping[str, tuple[int, int]]) -> dict[str, bytes]:
        """The files under `run/` that are new or changed since `before`, by relative path."""
        return {name: (self.run / name).read_bytes() for name, stat in self.snapshot().items()
                if before.get(name) != stat}


def private(root: Path) -> None:
    """`root` made (or found) as a folder only this user can enter, as are the two folders above
    it (the user's folder of runs, and the run's): a node's copies are loaded, so another user
    of the node must not be able to plant one, nor make a folder on the way first."""
    chain = [root.parent.parent, root.parent, root]
    for folder in chain:
        folder.mkdir(exist_ok=True, mode=0o700)
        found = folder.lstat()
        if found.st_uid != os.getuid() or not stat.S_ISDIR(found.st_mode):
            raise TamperedError(f"{folder}: this node folder is not a folder of this user's; "
                                f"remove it, or set TMPDIR to a folder of your own")
        if stat.S_IMODE(found.st_mode) != 0o700:
            folder.chmod(0o700)


def _shipped(path: Path, run: Path) -> bool:
    return path.relative_to(run).parts[:1] == (SHIPPED,)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def receive(files: Mapping[str, bytes], out_dir: Path) -> None:
    """Write what a node sent back into the driver's results folder (nowhere else)."""
    root = out_dir.resolve()
    for name, data in files.items():
        target = (root / name).resolve()
        if root not in target.parents:
            continue  # not under the results folder: never written
        _write(target, data)


def relocate(value: Any, mapping: Mapping[str, str]) -> Any:
    """`value` with every path in `mapping` (and every path under it) replaced, in strings and
    Paths anywhere inside it: dicts, lists, tuples, records and other frozen dataclasses."""
    if not mapping:
        return value
    keys = "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))
    # a whole path: not the tail of a longer one, nor the start of a longer name
    pattern = re.compile(r"(?<![\w.\-/])" + f"(?:{keys})" + r"(?=$|[/\s:;,)'\"|])")
    return _walk(value, lambda text: pattern.sub(lambda m: mapping[m.group(0)], text))


def _walk(value: Any, swap: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return swap(value)
    if isinstance(value, Path):
        return Path(swap(str(value)))
    if isinstance(value, Record):  # its paths are in info and in what it says went wrong
        return dataclasses.replace(value, info=_walk(dict(value.info), swap),
                                   reason=swap(value.reason))
    if isinstance(value, Mapping):
        return type(value)({k: _walk(v, swap) for k, v in value.items()}) if isinstance(
            value, dict) else {k: _walk(v, swap) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_walk(v, swap) for v in value)
    if isinstance(value, frozenset):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _walk(getattr(value, f.name), swap)
                   for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value
