"""The run history: stored runs, trends, compare by run id, and schema migrations."""

from __future__ import annotations

import sqlite3

import pytest

from toolkit import history
from toolkit.cli import app
from toolkit.errors import BadInputError

CliRunner = pytest.importorskip("typer.testing").CliRunner

runner = CliRunner()


@pytest.fixture()
def results(tiny_run):
    proc, out = tiny_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "results.json"


def test_run_is_stored_and_listed_with_its_trend(results, tmp_path):
    database = tmp_path / "h.sqlite"
    first, _ = history.remember(results, database)
    again = tmp_path / "again" / "results.json"  # a second run: the same figures, another folder
    again.parent.mkdir()
    again.write_text(results.read_text())
    second, _ = history.remember(again, database)
    assert second == first + 1
    # storing a run again (a resumed run) replaces its entry rather than adding one
    third, _ = history.remember(again, database)
    with history.connect(database) as connection:
        assert [r.id for r in history.runs(connection)] == [third, first]
    listing = runner.invoke(app, ["history", "--history", str(database)], terminal_width=200)
    assert listing.exit_code == 0, listing.output
    assert str(first) in listing.output and "tiny" in listing.output
    trend = runner.invoke(app, ["history", "--history", str(database), "--workload",
                                "digits-mlp"], terminal_width=250)
    assert trend.exit_code == 0
    assert "torch/digits-mlp onnxruntime run cpu b=1" in trend.output
    assert f"#{first}" in trend.output and f"#{third}" in trend.output
    # framework/name finds what the listing shows; another framework's workload finds nothing
    mine = runner.invoke(app, ["history", "--history", str(database), "--workload",
                               "torch/digits-mlp"], terminal_width=250)
    assert mine.exit_code == 0 and f"#{first}" in mine.output, mine.output
    bad = runner.invoke(app, ["history", "--history", str(database), "--workload", "a/b/c"])
    assert bad.exit_code == 2 and "give a name (digits-mlp) or framework/name" in bad.output
    assert "torch/digits-mlp onnxruntime run cpu b=1" in mine.output
    other = runner.invoke(app, ["history", "--history", str(database), "--workload",
                                "keras/digits-mlp"], terminal_width=250)
    assert other.exit_code == 0 and "no runs stored yet with workload" in other.output


def test_the_cli_run_records_itself(tiny_run):
    proc, _ = tiny_run
    assert "history: run " in proc.stdout


def test_a_version_1_database_is_migrated_keeping_its_rows(results, tmp_path):
    database = tmp_path / "old.sqlite"
    connection = sqlite3.connect(database)
    history.migrate(connection, database, target=1)  # as the first release left it
    connection.execute("INSERT INTO runs (started, suite, machine, run_json) "
                       "VALUES ('2026-01-01', 'old', 'host', '{}')")
    connection.commit()
    connection.close()
    with history.connect(database) as upgraded:
        assert upgraded.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
        assert upgraded.execute("SELECT suite FROM runs").fetchall() == [("old",)]
        columns = {row[1] for row in upgraded.execute("PRAGMA table_info(timings)")}
        assert "parity_passed" in columns
        run_id = history.add_run(upgraded, results)
        assert history.runs(upgraded)[0].id == run_id


def test_case_keys_stored_before_threads_were_part_of_them_are_made_again(tmp_path):
    import json

    from toolkit.results import Record

    record = Record("digits-mlp", "torch", "infer", runtime="onnxruntime", variant="run",
                    provider="cpu", batch_size=1, threads=2)
    database = tmp_path / "v2.sqlite"
    connection = sqlite3.connect(database)
    history.migrate(connection, database, target=2)
    connection.execute("INSERT INTO runs (id, run_json) VALUES (1, '{}')")
    connection.execute("INSERT INTO timings (run_id, case_key, workload, framework, "
                       "record_json) VALUES (1, 'torch/digits-mlp onnxruntime run cpu b=1', "
                       "'digits-mlp', 'torch', ?)", (json.dumps(record.to_dict()),))
    connection.commit()
    connection.close()
    with history.connect(database) as upgraded:
        keys = upgraded.execute("SELECT case_key FROM timings").fetchall()
    assert keys == [(record.case.key,)] and record.case.key.endswith("b=1 t=2")


def test_a_newer_or_foreign_database_is_refused(tmp_path):
    newer = tmp_path / "newer.sqlite"
    connection = sqlite3.connect(newer)
    connection.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(BadInputError, match="newer than this deploybench"):
        with history.connect(newer):
            pass
    foreign = tmp_path / "foreign.sqlite"
    foreign.write_text("not a database at all, just text " * 20)
    with pytest.raises(BadInputError, match="not a deploybench history"):
        with history.connect(foreign):
            pass
