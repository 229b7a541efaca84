"""Configuration (issue 14): nested dicts flattened to dotted params and kept whole,
sections (the same key in two is not a conflict), types kept while filters compare as
always; clone/fork with lineage -- over HTTP and in a data folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import deardiary as dd
from deardiary.schemas.errors import Conflict
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_server(tmp_path_factory.mktemp("config") / "data") as server:
        running = start_in_thread(server.app())
        try:
            yield running.url
        finally:
            running.stop()


CONFIG = {"optimizer": {"lr": 1e-3, "name": "adam", "betas": [0.9, 0.99]}, "epochs": 10}


@pytest.mark.parametrize("mode", ["http", "folder"])
def test_nested_sectioned_typed_params_and_clone(url: str, tmp_path: Path, mode: str) -> None:
    c = dd.connect(url if mode == "http" else str(tmp_path / "f"), spool_dir=tmp_path / "s")
    project = f"cfg-{mode}"
    with c.start_iteration(project=project, experiment="e", params=CONFIG, capture_env=False) as it:
        it.log_params({"lr": 0.1, "fp16": True}, section="Args")
        it.log_params({"lr": 0.2}, section="General")  # the same key elsewhere: no conflict
        it.log_params({"lr": 0.1}, section="Args")  # the same value again: a no-op
    c.flush()
    rows = c.sql(
        f"SELECT section, key, value, type FROM params WHERE iteration_id = '{it.id}'"
        " ORDER BY section, key"
    ).to_pylist()
    assert [(r["section"], r["key"], r["value"], r["type"]) for r in rows] == [
        ("", "epochs", "10", "int"),
        ("", "optimizer.betas", "[0.9,0.99]", "json"),
        ("", "optimizer.lr", "0.001", "float"),
        ("", "optimizer.name", "adam", "str"),
        ("Args", "fp16", "True", "bool"),
        ("Args", "lr", "0.1", "float"),
        ("General", "lr", "0.2", "float"),
    ]
    config = c.sql(f"SELECT config FROM iterations WHERE iteration_id = '{it.id}'").to_pylist()
    assert json.loads(config[0]["config"]) == {"": CONFIG}

    if mode == "http":

        def found(expression: str) -> list[str]:
            items = c.get("/api/v1/iterations", project_id=it.project_id, filter=expression)
            return [i["iteration_id"] for i in items["items"]]

        assert found("params.optimizer.lr = 0.001") == [it.id]  # numbers compare as numbers
        assert found("params.epochs > 5 and params.optimizer.name = 'adam'") == [it.id]
        assert found("params@Args.lr = 0.1") == [it.id]
        assert found("params@General.lr = 0.1") == []
        assert found("params.lr = 0.2") == [it.id]  # any section
        shown = c.get(f"/api/v1/iterations/{it.id}")["params"]
        assert shown["Args/lr"] == "0.1" and shown["General/lr"] == "0.2"
        with c.start_iteration(project=project, experiment="e", capture_env=False) as again:
            again.log_params({"lr": 0.1}, section="Args")
            again.log_params({"lr": 0.5}, section="Args")
        with pytest.raises(Conflict, match="Args/lr"):
            c.flush()

    with c.clone(it, name="fork", params={"epochs": 20}) as fork:
        fork.log_metric("loss", 0.5)
    c.flush()
    forked = c.sql(
        f"SELECT name, cloned_from, experiment_id, config FROM iterations"
        f" WHERE iteration_id = '{fork.id}'"
    ).to_pylist()[0]
    assert (forked["name"], forked["cloned_from"]) == ("fork", it.id)
    assert forked["experiment_id"] == it.experiment_id
    assert json.loads(forked["config"]) == {"": CONFIG}
    copied = c.sql(
        f"SELECT section, key, value, type FROM params WHERE iteration_id = '{fork.id}'"
        " ORDER BY section, key"
    ).to_pylist()
    assert [(r["section"], r["key"], r["value"], r["type"]) for r in copied] == [
        ("", "epochs", "20", "int"),
        ("", "optimizer.betas", "[0.9,0.99]", "json"),
        ("", "optimizer.lr", "0.001", "float"),
        ("", "optimizer.name", "adam", "str"),
        ("Args", "fp16", "True", "bool"),
        ("Args", "lr", "0.1", "float"),
        ("General", "lr", "0.2", "float"),
    ]
    elsewhere = c.clone(fork.id, experiment="forks")
    elsewhere.end()
    c.flush()
    moved = c.sql(
        f"SELECT e.name FROM iterations i JOIN experiments e USING (experiment_id)"
        f" WHERE i.iteration_id = '{elsewhere.id}'"
    ).to_pylist()
    assert moved == [{"name": "forks"}]
    c.close()
