"""Every run kept in an embedded SQLite database, for listing runs and the trend of a case.

The schema is versioned (PRAGMA user_version) and upgraded in place by MIGRATIONS, one script per
version step; a database newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError
from toolkit.results import Record, read_results

MIGRATIONS = (
    # 0 -> 1: runs and their timings
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started TEXT, finished TEXT, suite TEXT, machine TEXT, results_path TEXT,
        run_json TEXT NOT NULL
    );
    CREATE TABLE timings (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        case_key TEXT NOT NULL, workload TEXT NOT NULL, framework TEXT NOT NULL,
        batch_size INTEGER, p50_ms REAL, record_json TEXT NOT NULL
    );
    """,
    # 1 -> 2: the parity verdict beside each timing, and an index for trends
    """
    ALTER TABLE timings ADD COLUMN parity_passed INTEGER;
    CREATE INDEX timings_by_case ON timings(case_key, run_id);
    """,
    # 2 -> 3: case keys carry the threads (and a node, non-default settings): made again
    lambda connection: _rekey(connection),
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    """Under the user's data directory (XDG_DATA_HOME honoured)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "deploybench" / "history.sqlite"


LOCK_WAIT_S = 5.0  # how long to wait for another process that holds the database


@contextmanager
def connect(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    """An open, migrated database; BadInputError, naming the file and the fix, if it cannot
    be used (not SQLite, newer than this code, read-only, locked)."""
    path = path or default_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=LOCK_WAIT_S)
    except (OSError, sqlite3.Error) as exc:
        raise BadInputError(f"--history {path}: cannot open it ({exc}); choose another "
                            "--history") from None
    try:
        migrate(connection, path)
        yield connection
        connection.commit()
    except sqlite3.Error as exc:
        raise BadInputError(f"--history {path}: {_explain(exc)}") from None
    finally:
        connection.close()


def _explain(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return "the database is read-only; make it writable or choose another --history"
    if "locked" in text or "busy" in text:
        return ("the database is locked by another process; try again when it has finished, "
                "or choose another --history")
    if "not a database" in text or "malformed" in text:
        return f"not a deploybench history ({text}); choose another --history"
    return f"{text}; choose another --history"


def migrate(connection: sqlite3.Connection, path: Path, target: int = SCHEMA_VERSION) -> None:
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BadInputError(f"--history {path}: {_explain(exc)}") from None
    if version > SCHEMA_VERSION:
        raise BadInputError(
            f"--history {path}: schema version {version} is newer than this deploybench "
            f"({SCHEMA_VERSION}); upgrade deploybench or choose another --history"
        )
    for step in range(version, target):
        script = MIGRATIONS[step]
        if callable(script):
            script(connection)
        else:
            connection.executescript(script)
        connection.execute(f"PRAGMA user_version = {step + 1}")
    connection.commit()


def _rekey(connection: sqlite3.Connection) -> None:
    """Each stored timing's case key made again from its record, as `CaseId.key` makes it now
    (so a case's trend continues across the upgrade)."""
    rows = connection.execute("SELECT rowid, record_json FROM timings").fetchall()
    for rowid, text in rows:
        try:
            key = Record.from_dict(json.loads(text)).case.key
        except (ValueError, TypeError, KeyError):
            continue  # a record this version cannot read keeps its key
        connection.execute("UPDATE timings SET case_key = ? WHERE rowid = ?", (key, rowid))


def add_run(connection: sqlite3.Connection, results_path: Path) -> int:
    """Store a results.json's run and its timings; returns the run id."""
    run, records = read_results(results_path)
    env = run.get("environment", {})
    # A resumed run replaces what its interrupted part stored: one run, one entry.
    where = str(results_path.resolve())
    connection.execute("DELETE FROM timings WHERE run_id IN (SELECT id FROM runs WHERE "
                       "results_path = ?)", (where,))
    connection.execute("DELETE FROM runs WHERE results_path = ?", (where,))
    cursor = connection.execute(
        "INSERT INTO runs (started, finished, suite, machine, results_path, run_json) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run.get("started"), run.get("finished"), run.get("suite", {}).get("name"),
         env.get("hostname") or env.get("cpu"), str(results_path.resolve()),
         json.dumps(run, default=str)),
    )
    run_id = int(cursor.lastrowid or 0)
    connection.executemany(
        "INSERT INTO timings (run_id, case_key, workload, framework, batch_size, p50_ms, "
        "record_json, parity_passed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, r.case.key, r.workload, r.framework, r.batch_size,
          r.stats.p50_ms if r.stats else None,
          json.dumps(r.to_dict(samples=False), default=str),
          None if r.parity is None else int(r.parity.passed))
         for r in records if r.timed],
    )
    return run_id


@dataclass(frozen=True)
class RunRow:
    id: int
    started: str
    suite: str
    machine: str
    cases: int


def _workload_filter(workload: str) -> tuple[str, list[str]]:
    """SQL matching a workload given as `name` (every framework) or `framework/name`."""
    if workload.count("/") > 1 or not workload.strip("/") or workload.endswith("/"):
        raise BadInputError(f"--workload {workload!r}: give a name (digits-mlp) or "
                            "framework/name (torch/digits-mlp)")
    framework, _, name = workload.rpartition("/")
    if framework:
        return "timings.workload = ? AND timings.framework = ?", [name, framework]
    return "timings.workload = ?", [name]


def runs(connection: sqlite3.Connection, workload: str | None = None,
         limit: int = 20) -> list[RunRow]:
    query = ("SELECT runs.id, runs.started, runs.suite, runs.machine, COUNT(timings.run_id) "
             "FROM runs LEFT JOIN timings ON timings.run_id = runs.id ")
    args: list[Any] = []
    if workload:
        where, args = _workload_filter(workload)
        query += f"WHERE {where} "
    query += "GROUP BY runs.id ORDER BY runs.id DESC LIMIT ?"
    rows = connection.execute(query, [*args, limit]).fetchall()
    return [RunRow(int(r[0]), r[1] or "", r[2] or "", r[3] or "", int(r[4])) for r in rows]


def trend(connection: sqlite3.Connection, workload: str,
          limit: int = 20) -> dict[str, list[tuple[int, float]]]:
    """For each case of `workload`: (run id, p50 ms) over the last `limit` runs, oldest first."""
    where, args = _workload_filter(workload)
    rows = connection.execute(
        f"SELECT case_key, run_id, p50_ms FROM timings WHERE {where} AND run_id IN "
        "(SELECT id FROM runs ORDER BY id DESC LIMIT ?) ORDER BY case_key, run_id",
        (*args, limit),
    ).fetchall()
    found: dict[str, list[tuple[int, float]]] = {}
    for key, run_id, p50 in rows:
        found.setdefault(key, []).append((int(run_id), float(p50)))
    return found


def load_run(connection: sqlite3.Connection, run_id: int
             ) -> tuple[Mapping[str, Any], list[Record]]:
    """A stored run as (run info, timing records), as `results.read_results` gives a file."""
    row = connection.execute("SELECT run_json FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise BadInputError(f"run {run_id} is not in the history; `deploybench history` lists "
                            "the runs")
    try:
        records = [Record.from_dict(json.loads(r[0])) for r in connection.execute(
            "SELECT record_json FROM timings WHERE run_id = ?", (run_id,))]
        return json.loads(row[0]), records
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"run {run_id} in the history cannot be read ({exc}); compare its "
                            "results.json instead") from None


def remember(results_path: Path, path: Path | None = None) -> tuple[int, Path]:
    """Store one finished (or interrupted) run; returns (its id, the database's path)."""
    where = path or default_path()
    with connect(where) as connection:
        return add_run(connection, results_path), where


def resolve(reference: str, path: Path | None = None) -> tuple[Mapping[str, Any], list[Record]]:
    """A results.json path, or the id of a run in the history."""
    candidate = Path(reference)
    if not candidate.exists() and not reference.isdigit():
        raise BadInputError(f"{reference}: no such results file; give a results.json or the "
                            "id of a run that `deploybench history` lists")
    if candidate.exists():
        return read_results(candidate)
    with connect(path) as connection:
        return load_run(connection, int(reference))
