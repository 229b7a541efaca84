"""Optuna: every trial of a study is an iteration, its result and its state in the log.

    import deardiary as dd
    from deardiary.integrations.optuna import DearDiaryCallback

    diary = DearDiaryCallback(dd.connect("http://127.0.0.1:9000"), project="mnist")

    @diary.track                    # optional: the iteration runs while the trial does
    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        for epoch in range(10):
            loss = train_one_epoch(lr)
            diary.iteration(trial).log_metric("train_loss", loss, epoch)  # your own metrics
            trial.report(loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    study = optuna.create_study(study_name="lr-search")
    study.optimize(objective, n_trials=50, callbacks=[diary])

What lands, per trial (experiment: the study's name unless given): an iteration named
``trial-<number>`` with the trial's params, its intermediate values (`trial.report`) as
the metric ``intermediate_value`` at their steps, its objective value as the metric
``value`` (``value_0``, ``value_1``, ... with several objectives) when it completes,
and its end: COMPLETE -> SUCCEEDED, PRUNED -> KILLED, FAIL -> FAILED with the error.
Tags: ``optuna.study``, ``optuna.trial``, ``optuna.state``, ``optuna.direction``, and
``optuna.best`` = ``true`` on the study's best trial so far (one objective), so::

    SELECT i.name, m.last AS value FROM iterations i JOIN last_metrics m USING (iteration_id)
    WHERE m.key = 'value' AND i.tags->>'optuna.best' = 'true'

The iteration of a trial has an external id made of the study's name and the trial's
number, so a study resumed in another process (or trial numbers reused by a re-run of
the same study) writes to the same iterations. Without `@track`, the callback alone
records each trial when it has finished.
"""

from __future__ import annotations

import functools
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar

import optuna

from deardiary.client import Client
from deardiary.iteration import Iteration
from deardiary.schemas.events import IterationStatus

R = TypeVar("R")

_STATUS = {
    optuna.trial.TrialState.COMPLETE: IterationStatus.SUCCEEDED,
    optuna.trial.TrialState.PRUNED: IterationStatus.KILLED,
    optuna.trial.TrialState.FAIL: IterationStatus.FAILED,
}


class DearDiaryCallback:
    """An Optuna callback (``study.optimize(..., callbacks=[it])``) that records trials;
    `track` also starts each trial's iteration when the trial starts."""

    def __init__(
        self,
        client: Client,
        project: str,
        experiment: str | None = None,
        *,
        metric_name: str | Sequence[str] = "value",
        intermediate_name: str = "intermediate_value",
        capture_env: bool = True,
    ) -> None:
        self.client = client
        self.project = project
        self.experiment = experiment
        self.metric_name = metric_name
        self.intermediate_name = intermediate_name
        self.capture_env = capture_env
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], Iteration] = {}
        self._ended: set[tuple[str, int]] = set()  # failed under track(): ended there
        self._best: dict[str, Iteration] = {}

    # -- while a trial runs ----------------------------------------------------------------

    def track(self, objective: Callable[[optuna.Trial], R]) -> Callable[[optuna.Trial], R]:
        """Wrap an objective: its trial's iteration starts with it (status RUNNING,
        heartbeats) and `iteration(trial)` is there for the objective's own logging."""

        @functools.wraps(objective)
        def tracked(trial: optuna.Trial) -> R:
            key = (trial.study.study_name, trial.number)
            iteration = self._start(trial.study, trial.number)
            with self._lock:
                self._running[key] = iteration
            try:
                return objective(trial)
            except optuna.TrialPruned:
                raise  # the callback ends it KILLED, with its intermediate values
            except BaseException as exc:
                # Optuna calls no callback when the error propagates: end it here.
                with self._lock:
                    self._running.pop(key, None)
                    self._ended.add(key)
                if trial.params:
                    iteration.log_params(trial.params)
                iteration.set_tags({"optuna.state": "FAIL"})
                if isinstance(exc, KeyboardInterrupt):
                    iteration.end(IterationStatus.KILLED, "KeyboardInterrupt")
                else:
                    text = "".join(traceback.format_exception(exc))[-16_000:]
                    iteration.end(IterationStatus.FAILED, f"{type(exc).__name__}: {exc}\n\n{text}")
                raise

        return tracked

    def iteration(self, trial: optuna.Trial) -> Iteration:
        """The iteration of a trial running under `track` (to log more into it)."""
        with self._lock:
            found = self._running.get((trial.study.study_name, trial.number))
        if found is None:
            raise LookupError(f"trial {trial.number} is not running under track()")
        return found

    # -- when it has finished --------------------------------------------------------------

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        status = _STATUS.get(trial.state)
        if status is None:  # still running or waiting: not for a callback
            return
        key = (study.study_name, trial.number)
        with self._lock:
            if key in self._ended:  # failed under track(), ended there
                self._ended.discard(key)
                return
            iteration = self._running.pop(key, None)
        error = ""
        if iteration is None:
            iteration = self._start(study, trial.number)
        if trial.params:
            iteration.log_params(trial.params)
        for step, value in sorted(trial.intermediate_values.items()):
            iteration.log_metric(self.intermediate_name, value, step)
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.values is not None:
            for name, value in zip(self._names(len(trial.values)), trial.values, strict=True):
                iteration.log_metric(name, value, 0)
        iteration.set_tags({"optuna.state": trial.state.name})
        if status == IterationStatus.FAILED and not error:
            error = str(trial.system_attrs.get("fail_reason", "the objective failed"))
        elif status == IterationStatus.KILLED:
            error = f"pruned at step {trial.last_step}" if trial.last_step is not None else ""
        iteration.end(status, error)
        if trial.state == optuna.trial.TrialState.COMPLETE:
            self._mark_best(study, trial, iteration)

    def _mark_best(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, iteration: Iteration
    ) -> None:
        if len(study.directions) != 1:
            return  # several objectives: no single best
        try:
            best = study.best_trial.number
        except ValueError:
            return
        if best != trial.number:
            return
        with self._lock:
            previous = self._best.get(study.study_name)
            self._best[study.study_name] = iteration
        if previous is not None and previous.id != iteration.id:
            previous.set_tags({"optuna.best": "false"})
        iteration.set_tags({"optuna.best": "true"})

    # -- helpers ---------------------------------------------------------------------------

    def _start(self, study: optuna.Study, number: int) -> Iteration:
        directions = ",".join(d.name.lower() for d in study.directions)
        return self.client.start_iteration(
            project=self.project,
            experiment=self.experiment or study.study_name,
            name=f"trial-{number}",
            external_id=f"optuna:{study.study_name}:{number}",
            tags={
                "optuna.study": study.study_name,
                "optuna.trial": str(number),
                "optuna.direction": directions,
            },
            capture_env=self.capture_env,
        )

    def _names(self, count: int) -> list[str]:
        if isinstance(self.metric_name, str):
            if count == 1:
                return [self.metric_name]
            return [f"{self.metric_name}_{i}" for i in range(count)]
        names = list(self.metric_name)
        if len(names) != count:
            raise ValueError(f"metric_name has {len(names)} names for {count} objectives")
        return names
