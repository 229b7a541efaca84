"""PyTorch Lightning: a `Logger` that writes a training run into one iteration.

    import deardiary as dd
    from deardiary.integrations.lightning import DearDiaryLogger

    logger = DearDiaryLogger(dd.connect("http://127.0.0.1:9000"), project="mnist",
                             experiment="cnn", name="lr-0.01", keep_best=3)
    trainer = lightning.Trainer(logger=logger, callbacks=[ModelCheckpoint(monitor="val_loss")])
    trainer.fit(model, datamodule)

What lands in the iteration (started on first use, or the one given as `iteration=`):

* hyper-parameters (`save_hyperparameters()`, `log_hyperparams`) as params; nested dicts
  become dotted keys, a Namespace its attributes. Params are write-once, so a key logged
  again with the same value is not sent twice, and a different value is left out with a
  warning on the logger ``deardiary.client`` (the first value stays);
* metrics at Lightning's global step, in metric groups: ``val/loss`` (Lightning's
  group separator) is the key ``loss`` of the group ``val``, and so is ``val_loss``
  (the prefixes ``train_``, ``val_``, ``valid_``, ``validation_``, ``test_`` and
  ``predict_`` by default: `group_prefixes=()` keeps names whole); anything else is in
  the default group, ``epoch`` included;
* checkpoints: each new file a `ModelCheckpoint` saves (best, top-k, last) becomes a
  checkpoint of the iteration at the step it was saved, with the monitored score as
  its metric; `keep_best=N` keeps the best N by that metric (the checkpoint's mode as
  the goal) and frees the rest; `log_checkpoints=False` logs none;
* the end: Lightning's ``success`` -> SUCCEEDED, ``failed`` -> FAILED (the exception
  text, when Lightning still has it in ``sys.exc_info()``), ``finished`` (a signal
  ended the run) -> KILLED. An iteration given as `iteration=` is left open.

Logging never waits on the network (the SDK's buffer); `finalize` flushes, bounded
by `flush_timeout`, so the run is queryable when `trainer.fit` returns (what is not
delivered by then stays in the spool: a successful run raises the SDK's error there, a
failed one logs it and lets Lightning raise the training's own exception). Only rank 0
logs (`rank_zero_only`), as Lightning's own loggers do.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from deardiary.client import Client
from deardiary.iteration import Iteration
from deardiary.notices import log
from deardiary.schemas.errors import DearDiaryError
from deardiary.schemas.events import IterationStatus

GROUP_PREFIXES = ("train_", "val_", "valid_", "validation_", "test_", "predict_")

_STATUS = {
    "success": IterationStatus.SUCCEEDED,
    "failed": IterationStatus.FAILED,
    "finished": IterationStatus.KILLED,  # Lightning's signal handler: the job was stopped
}


def split_group(
    name: str, separator: str = "/", prefixes: tuple[str, ...] = GROUP_PREFIXES
) -> tuple[str, str]:
    """(group, key) of a Lightning metric name: ``val/loss`` and ``val_loss`` -> ("val",
    "loss"); a name with neither stays whole in the default group ""."""
    if separator and separator in name:
        group, key = name.split(separator, 1)
        if group and key:
            return group, key
    for prefix in prefixes:
        if name.startswith(prefix) and len(name) > len(prefix):
            return prefix[:-1], name[len(prefix) :]
    return "", name


def _scalar(value: Any) -> float:
    item = getattr(value, "item", None)  # a tensor or a numpy scalar
    return float(item() if callable(item) else value)


class DearDiaryLogger(Logger):
    """A Lightning logger writing into a DearDiary iteration (see the module's docs)."""

    def __init__(
        self,
        client: Client,
        project: str,
        experiment: str = "lightning",
        *,
        name: str = "",
        iteration: Iteration | None = None,
        tags: Mapping[str, str] | None = None,
        log_checkpoints: bool = True,
        keep_best: int | None = None,
        group_prefixes: tuple[str, ...] = GROUP_PREFIXES,
        flush_timeout: float | None = 60.0,
        **start_options: Any,
    ) -> None:
        super().__init__()
        self.client = client
        self.project = project
        self.experiment_name = experiment
        self.run_name = name
        self.tags = dict(tags or {})
        self.log_checkpoints = log_checkpoints
        self.keep_best = keep_best
        self.group_prefixes = group_prefixes
        self.flush_timeout = flush_timeout
        self.start_options = start_options
        self._iteration = iteration
        self._owns_iteration = iteration is None
        self._params: dict[str, Any] = {}
        self._logged_files: dict[str, float] = {}  # checkpoint path -> mtime logged

    # -- what Lightning asks of every logger --------------------------------------------
    @property
    def name(self) -> str:
        return self.experiment_name

    @property
    def version(self) -> str:
        return self.experiment.id if rank_zero_only.rank == 0 else ""

    @property
    @rank_zero_experiment
    def experiment(self) -> Iteration:
        """The iteration (started on first use)."""
        if self._iteration is None:
            self._iteration = self.client.start_iteration(
                project=self.project,
                experiment=self.experiment_name,
                name=self.run_name,
                tags=self.tags,
                **self.start_options,
            )
        return self._iteration

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        fresh = {}
        for key, value in values.items():
            if key not in self._params:
                self._params[key] = fresh[key] = value
            elif self._params[key] != value:
                log.warning(
                    "deardiary: hyper-parameter %r logged again with another value (%r, was"
                    " %r); params are write-once, the first value stays",
                    key,
                    value,
                    self._params[key],
                )
        if fresh:
            self.experiment.log_params(fresh)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        groups: dict[str, dict[str, float]] = {}
        for full, value in metrics.items():
            group, key = split_group(full, self.group_separator, self.group_prefixes)
            groups.setdefault(group, {})[key] = _scalar(value)
        it = self.experiment
        for group, values in groups.items():
            it.log_metrics(values, step, group)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self.log_checkpoints:
            self._log_new_checkpoints(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        it = self._iteration
        if it is None or not self._owns_iteration or it.ended:
            return
        error = ""
        if status == "failed":
            exc = sys.exc_info()[1]
            error = f"{type(exc).__name__}: {exc}" if exc is not None else "training failed"
        it.end(_STATUS.get(status, IterationStatus.FAILED), error)
        try:
            self.client.flush(timeout=self.flush_timeout)
        except DearDiaryError as exc:
            if status == "success":
                raise  # the run's data did not land: say so where the run ends
            # Lightning is handling the training's own exception: do not mask it
            log.error("deardiary: the run's last events are not delivered: %s", exc)

    # -- checkpoints -----------------------------------------------------------------------
    def _log_new_checkpoints(self, callback: Any) -> None:
        """Every file the callback kept (best, top-k, last) that is new or was rewritten
        since it was logged, oldest first."""
        scores: dict[str, tuple[Any, str]] = {}
        last = getattr(callback, "last_model_path", "")
        if last:
            scores[last] = (getattr(callback, "current_score", None), "last")
        for path, score in (getattr(callback, "best_k_models", None) or {}).items():
            scores[path] = (score, "top_k")
        best = getattr(callback, "best_model_path", "")
        if best:
            scores[best] = (getattr(callback, "best_model_score", None), "best")
        found = []
        for path, (score, kind) in scores.items():
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue
            if self._logged_files.get(path) != mtime:
                found.append((mtime, path, score, kind))
        monitor = getattr(callback, "monitor", None)
        goal = "max" if getattr(callback, "mode", "min") == "max" else "min"
        step = getattr(callback, "_last_global_step_saved", None)
        it = self.experiment
        for mtime, path, score, kind in sorted(found):
            metrics = {str(monitor): _scalar(score)} if monitor and score is not None else {}
            retain = self.keep_best is not None and bool(metrics)
            it.log_checkpoint(
                path,
                step=step if isinstance(step, int) and step >= 0 else None,
                metrics=metrics,
                metadata={"kind": kind, "file": os.path.basename(path)},
                keep_best=self.keep_best if retain else None,
                order_by=str(monitor) if retain else None,
                goal=goal,
            )
            self._logged_files[path] = mtime
