"""A real Optuna study (a few CPU trials) recorded through the integration: trials as
iterations, pruned ones KILLED, failed ones FAILED, the best one found with SQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

import deardiary as dd
from deardiary.integrations.optuna import DearDiaryCallback

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -2.0, 2.0)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    if trial.number == 3:
        raise ValueError("trial 3 breaks")
    loss = 0.0
    for step in range(4):
        loss = (x - 0.5) ** 2 + (4 - step) / 10 + (0.05 if kind == "b" else 0.0)
        trial.report(loss, step)
        if step == 1 and x < -1.0:
            raise optuna.TrialPruned()
    return loss


def _study(name: str) -> optuna.Study:
    return optuna.create_study(
        study_name=name, direction="minimize", sampler=optuna.samplers.RandomSampler(seed=7)
    )


@pytest.mark.parametrize("tracked", [False, True])
def test_a_study_lands_as_iterations_with_its_best_in_sql(tracked: bool, tmp_path: Path) -> None:
    with dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool") as client:
        diary = DearDiaryCallback(client, project="tune", capture_env=False)
        objective: Callable[[optuna.Trial], float] = _objective
        if tracked:
            seen: list[str] = []

            def inner(trial: optuna.Trial) -> float:
                seen.append(diary.iteration(trial).id)  # running while the trial runs
                diary.iteration(trial).log_metric("own", 1.0, 0)
                return _objective(trial)

            objective = diary.track(inner)
        study = _study(f"s-{tracked}")
        study.optimize(objective, n_trials=12, callbacks=[diary], catch=(ValueError,))
        client.flush()

        rows = client.sql(
            "SELECT i.name, i.status, i.error_message, i.tags->>'optuna.state' AS state"
            " FROM iterations i ORDER BY i.created_at"
        ).to_pylist()
        states = {t.number: t.state.name for t in study.trials}
        assert len(rows) == 12 and {r["name"] for r in rows} == {f"trial-{n}" for n in range(12)}
        status = {"COMPLETE": "SUCCEEDED", "PRUNED": "KILLED", "FAIL": "FAILED"}
        for row in rows:
            number = int(row["name"].removeprefix("trial-"))
            assert row["status"] == status[states[number]], row
            assert row["state"] == states[number]
        assert "PRUNED" in states.values() and states[3] == "FAIL"
        failed = next(r for r in rows if r["name"] == "trial-3")
        assert "breaks" in failed["error_message"] or "objective failed" in failed["error_message"]
        pruned = next(r for r in rows if r["status"] == "KILLED")
        assert pruned["error_message"] == "pruned at step 1"

        best = client.sql(
            "SELECT i.name, m.last AS value FROM iterations i JOIN last_metrics m"
            " USING (iteration_id) WHERE m.key = 'value' AND i.tags->>'optuna.best' = 'true'"
        ).to_pylist()
        assert best == [{"name": f"trial-{study.best_trial.number}", "value": study.best_value}]
        by_order = client.sql(
            "SELECT i.name FROM iterations i JOIN last_metrics m USING (iteration_id)"
            " WHERE m.key = 'value' ORDER BY m.last LIMIT 1"
        ).to_pylist()
        assert by_order == [{"name": f"trial-{study.best_trial.number}"}]

        curve = client.sql(
            "SELECT m.step, m.value FROM metrics m JOIN iterations i USING (iteration_id)"
            f" WHERE i.name = 'trial-{study.best_trial.number}' AND m.key = 'intermediate_value'"
            " ORDER BY m.step"
        ).to_pylist()
        reported = study.best_trial.intermediate_values
        assert [(r["step"], r["value"]) for r in curve] == sorted(reported.items())
        params = client.sql(
            "SELECT p.key, p.value FROM params p JOIN iterations i USING (iteration_id)"
            f" WHERE i.name = 'trial-{study.best_trial.number}' ORDER BY p.key"
        ).to_pylist()
        assert {r["key"]: r["value"] for r in params} == {
            k: str(v) for k, v in study.best_trial.params.items()
        }
        if tracked:
            assert len(seen) == 12
            own = client.sql("SELECT count(*) AS n FROM metrics WHERE key = 'own'").to_pylist()
            assert own == [{"n": 12}]


def test_an_error_that_stops_the_study_still_ends_the_tracked_trial(tmp_path: Path) -> None:
    with dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool") as client:
        diary = DearDiaryCallback(client, project="tune", capture_env=False)

        def objective(trial: optuna.Trial) -> float:
            trial.suggest_float("x", 0, 1)
            raise RuntimeError("out of memory")

        with pytest.raises(RuntimeError):
            _study("stops").optimize(diary.track(objective), n_trials=3, callbacks=[diary])
        client.flush()
        rows = client.sql("SELECT name, status, error_message FROM iterations").to_pylist()
        assert len(rows) == 1 and rows[0]["status"] == "FAILED"
        assert "RuntimeError: out of memory" in rows[0]["error_message"]
