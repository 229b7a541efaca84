"""The PyTorch Lightning logger with the real library: a tiny linear model trained on the
CPU for a few steps, logging into a real server over HTTP; what landed is read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "lightning",
    reason="PyTorch Lightning is not installed: pip install 'deardiary[lightning]' torch",
)

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

import deardiary as dd
from deardiary.integrations.lightning import DearDiaryLogger, split_group
from deardiary.services.http import start_in_thread
from deardiary.services.server import EmbeddedServer

# Lightning's advice for real runs (more data-loader workers, a GPU) and its deprecation
# notices about torch's internals are noise here.
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning"
)


class Linear(L.LightningModule):
    def __init__(self, lr: float = 0.1, optimizer: dict[str, Any] | None = None, fail_at: int = -1):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch: Any, index: int) -> torch.Tensor:
        if self.global_step == self.hparams.fail_at:
            raise RuntimeError("loss exploded")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, index: int) -> None:
        x, y = batch
        error = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("val/loss", error)
        self.log("val_mae", (self.layer(x) - y).abs().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _data() -> DataLoader[Any]:
    x = torch.linspace(-1, 1, 32).unsqueeze(1)
    return DataLoader(TensorDataset(x, 3 * x + 1), batch_size=8)  # 4 steps an epoch


def _trainer(root: Path, logger: DearDiaryLogger, **options: Any) -> L.Trainer:
    options = {"max_epochs": 2, **options}
    return L.Trainer(
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **options,
    )


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedServer(tmp_path_factory.mktemp("lightning") / "data")
    server.start()
    try:
        with start_in_thread(server.app()) as running:
            yield running.url
    finally:
        server.close()


def test_metric_names_map_to_groups() -> None:
    assert split_group("val/loss") == ("val", "loss")
    assert split_group("val_loss") == ("val", "loss")
    assert split_group("train_loss_epoch") == ("train", "loss_epoch")
    assert split_group("epoch") == ("", "epoch")
    assert split_group("lr-SGD") == ("", "lr-SGD")
    assert split_group("val_") == ("", "val_")
    assert split_group("val_loss", prefixes=()) == ("", "val_loss")


def test_a_training_run_lands_params_grouped_metrics_checkpoints_and_its_end(
    url: str, tmp_path: Path
) -> None:
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    logger = DearDiaryLogger(c, project="lightning", experiment="linear", name="sgd", keep_best=1)
    checkpoints = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="val/loss", save_top_k=2, save_last=True
    )
    model = Linear(lr=0.1, optimizer={"name": "sgd", "momentum": 0.0})
    _trainer(tmp_path, logger, callbacks=[checkpoints]).fit(model, _data(), _data())
    it = logger.experiment.id
    assert logger.version == it and logger.name == "linear"

    # finalize flushed: everything is queryable once fit returned
    row = c.sql(f"SELECT name, status FROM iterations WHERE iteration_id = '{it}'").to_pylist()
    assert row == [{"name": "sgd", "status": "SUCCEEDED"}]
    params = c.sql(f"SELECT key, value FROM params WHERE iteration_id = '{it}'").to_pylist()
    assert {p["key"]: p["value"] for p in params} == {
        "lr": "0.1",
        "optimizer.name": "sgd",
        "optimizer.momentum": "0.0",
        "fail_at": "-1",
    }
    series = c.sql(
        'SELECT "group", key, count(*) AS n, max(step) AS last FROM metrics'
        f" WHERE iteration_id = '{it}' GROUP BY ALL ORDER BY ALL"
    ).to_pylist()
    found = {(r["group"], r["key"]): (r["n"], r["last"]) for r in series}
    assert found[("train", "loss")] == (8, 7)  # every step of 2 epochs x 4 batches
    assert found[("val", "loss")] == (2, 7)  # at each epoch's end, at its global step
    assert found[("val", "mae")] == (2, 7)
    assert ("", "epoch") in found
    assert all(group in ("", "train", "val") for group, _ in found)

    kept = c.checkpoints(it, order_by="val/loss", goal="min")
    every = c.checkpoints(it, include_discarded=True)
    assert len(kept) == 1 and len(every) >= 2  # keep_best=1: the others were discarded
    best = kept[0]
    assert best["metrics"]["val/loss"] == pytest.approx(float(checkpoints.best_model_score))
    assert best["metadata"]["file"] == Path(checkpoints.best_model_path).name
    assert {f["path"] for f in best["files"]} == {Path(checkpoints.best_model_path).name}
    c.close()


def test_a_failing_run_ends_failed_with_the_error(url: str, tmp_path: Path) -> None:
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    logger = DearDiaryLogger(c, project="lightning", experiment="linear", name="explodes")
    with pytest.raises(RuntimeError, match="loss exploded"):
        _trainer(tmp_path, logger).fit(Linear(fail_at=2), _data())
    it = logger.experiment.id
    row = c.sql(
        f"SELECT status, error_message FROM iterations WHERE iteration_id = '{it}'"
    ).to_pylist()
    assert row[0]["status"] == "FAILED"
    assert "RuntimeError: loss exploded" in row[0]["error_message"]
    losses = c.sql(
        f"SELECT step FROM metrics WHERE iteration_id = '{it}' AND key = 'loss' ORDER BY step"
    ).to_pylist()
    assert [r["step"] for r in losses] == [0, 1]  # what was logged before it failed
    c.close()


def test_a_given_iteration_is_used_and_left_open(url: str, tmp_path: Path) -> None:
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    with c.start_iteration(project="lightning", experiment="linear", name="mine") as mine:
        logger = DearDiaryLogger(c, project="lightning", iteration=mine, log_checkpoints=False)
        _trainer(tmp_path, logger, max_epochs=1, enable_checkpointing=False).fit(Linear(), _data())
        assert not mine.ended  # the caller's block ends it
        mine.log_metric("after", 1.0)
    c.flush(timeout=60)
    rows = c.sql(f"SELECT status FROM iterations WHERE iteration_id = '{mine.id}'").to_pylist()
    assert rows == [{"status": "SUCCEEDED"}]
    assert (
        c.sql(f"SELECT count(*) AS n FROM checkpoints WHERE iteration_id = '{mine.id}'")["n"][
            0
        ].as_py()
        == 0
    )
    c.close()


def test_an_unreachable_server_does_not_mask_the_training_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    c = dd.connect(f"http://127.0.0.1:{port}", spool_dir=tmp_path / "spool", exit_timeout=0.1)
    logger = DearDiaryLogger(c, project="lightning", flush_timeout=0.5)
    with pytest.raises(RuntimeError, match="loss exploded"):
        _trainer(tmp_path, logger).fit(Linear(fail_at=1), _data())
    assert logger.experiment.ended
    assert c.undelivered() > 0  # kept in the spool for a later process
    c.close(timeout=0.1)
