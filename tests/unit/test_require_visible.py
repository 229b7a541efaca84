"""The routes' existence check of an iteration is written apart from `visible()` (cheaper
subqueries): it must find exactly the iterations `visible('iterations')` shows, for every
combination of deleted iteration, experiment, and either project, and a missing one."""

from __future__ import annotations

import itertools

import duckdb
import pytest

from deardiary.projections.queries.visibility import visible
from deardiary.schemas.errors import NotFound
from deardiary.services.query.routes import require


def _world() -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    conn = duckdb.connect()
    conn.execute("CREATE TABLE projects (project_id VARCHAR PRIMARY KEY, deleted BOOLEAN)")
    conn.execute(
        "CREATE TABLE experiments (experiment_id VARCHAR PRIMARY KEY, project_id VARCHAR,"
        " deleted BOOLEAN)"
    )
    conn.execute(
        "CREATE TABLE iterations (iteration_id VARCHAR PRIMARY KEY, experiment_id VARCHAR,"
        " project_id VARCHAR, deleted BOOLEAN)"
    )
    ids = []
    flags = itertools.product([False, True], repeat=5)
    for n, (it_gone, exp_gone, exp_project_gone, project_gone, moved) in enumerate(flags):
        # an iteration's project is its experiment's, or another one (moved)
        p_exp, p_it = f"pe{n}", (f"pi{n}" if moved else f"pe{n}")
        conn.execute("INSERT INTO projects VALUES (?, ?)", [p_exp, exp_project_gone])
        if moved:
            conn.execute("INSERT INTO projects VALUES (?, ?)", [p_it, project_gone])
        conn.execute("INSERT INTO experiments VALUES (?, ?, ?)", [f"e{n}", p_exp, exp_gone])
        conn.execute(
            "INSERT INTO iterations VALUES (?, ?, ?, ?)", [f"i{n}", f"e{n}", p_it, it_gone]
        )
        ids.append(f"i{n}")
    # an iteration whose experiment and project rows are not there (not shown to a caller)
    conn.execute("INSERT INTO iterations VALUES ('orphan', 'e-none', 'p-none', false)")
    return conn, [*ids, "orphan", "missing"]


def test_the_iteration_check_finds_what_visible_shows() -> None:
    conn, ids = _world()
    shown = {
        str(r[0])
        for r in conn.execute(
            f"SELECT iteration_id FROM iterations WHERE {visible('iterations')}"
        ).fetchall()
    }
    assert "orphan" in shown and 0 < len(shown) < len(ids) - 1
    for iteration_id in ids:
        if iteration_id in shown:
            require(conn, "iteration", iteration_id)
        else:
            with pytest.raises(NotFound):
                require(conn, "iteration", iteration_id)
