"""Replay covers what issue 14 added: metric groups, media, histograms, checkpoints (and
retention), sectioned typed params and config, names, moves, delete and restore, clones
-- the rebuilt projections answer identically, and --as-of shows the past."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import deardiary as dd
from deardiary.services.embedded import EmbeddedStore
from tests.store_snapshot import snapshot


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deardiary.services.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replay_of_tracking_depth_answers_identically(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = dd.connect(str(data), spool_dir=tmp_path / "spool")
    with c.start_iteration(
        project="p", experiment="e", params={"opt": {"lr": 0.1}}, capture_env=False
    ) as it:
        it.log_params({"lr": 1}, section="Args")
        for step in range(3):
            it.log_metric("loss", 1.0 / (step + 1))
            it.log_metric("loss", 2.0 / (step + 1), group="val")
            it.log_image("img", np.full((4, 4), step, np.uint8), step=step)
            it.log_histogram("w", np.arange(10.0) * step, step=step, bins=3)
            (tmp_path / "ckpt.bin").write_bytes(b"weights %d" % step)
            it.log_checkpoint(tmp_path / "ckpt.bin", step=step, metrics={"loss": 1.0 / (step + 1)})
        it.log_text("sample", "hello", step=0)
    c.retain_checkpoints(it, 1, order_by="loss")
    c.rename(it, "renamed")
    before_delete = c.flush()
    c.delete(it)
    c.restore(it.id)
    c.move(it, "other")
    with c.clone(it, name="fork") as fork:
        fork.log_metric("loss", 0.5, group="val")
    c.flush()
    c.close()

    with EmbeddedStore(data) as live:
        live.catch_up()
        live.store.compact()
        live_state = snapshot(live.store.reader())
    for relation in ("media", "histograms", "checkpoints"):
        assert live_state[relation], relation
    result = _cli("replay", "--data", str(data), "--into", str(tmp_path / "rebuilt"))
    assert result.returncode == 0, result.stderr
    with EmbeddedStore(tmp_path / "rebuilt", create_log=False) as rebuilt:
        assert snapshot(rebuilt.store.reader()) == live_state

    past = _cli(
        "replay",
        "--data",
        str(data),
        "--into",
        str(tmp_path / "past"),
        "--as-of",
        str(before_delete),
    )
    assert past.returncode == 0, past.stderr
    with EmbeddedStore(tmp_path / "past", create_log=False) as then:
        rows = (
            then.store.reader()
            .execute(
                "SELECT i.name, i.deleted, e.name FROM iterations i JOIN experiments e"
                " USING (experiment_id) ORDER BY i.created_at"
            )
            .fetchall()
        )
    assert rows == [("renamed", False, "e")]  # before the delete, the move and the clone
