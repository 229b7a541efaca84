"""What reads show: an entity is hidden when it is deleted, or when what contains it is.

Deleting an experiment hides its iterations and artifacts with it (and a project its
experiments, models and everything in them); restoring it shows them again. Nothing is
copied into the contained rows -- in Kafka mode they live in other partitions -- so every
read asks here, in SQL, whether a row is visible. `{t}` is the alias of the row's table.
"""

from __future__ import annotations

_PROJECT_DELETED = "EXISTS (SELECT 1 FROM projects _p WHERE _p.project_id = {pid} AND _p.deleted)"
_EXPERIMENT_DELETED = (
    "EXISTS (SELECT 1 FROM experiments _e WHERE _e.experiment_id = {eid} AND (_e.deleted OR "
    + _PROJECT_DELETED.format(pid="_e.project_id")
    + "))"
)
_ITERATION_DELETED = (
    "EXISTS (SELECT 1 FROM iterations _i WHERE _i.iteration_id = {iid} AND _i.deleted)"
)
_MODEL_DELETED = (
    "EXISTS (SELECT 1 FROM models _m WHERE _m.model_id = {mid} AND (_m.deleted OR "
    + _PROJECT_DELETED.format(pid="_m.project_id")
    + "))"
)

_VISIBLE: dict[str, str] = {
    "projects": "NOT {t}.deleted",
    "experiments": "NOT {t}.deleted AND NOT " + _PROJECT_DELETED.format(pid="{t}.project_id"),
    "iterations": "NOT {t}.deleted AND NOT "
    + _EXPERIMENT_DELETED.format(eid="{t}.experiment_id")
    + " AND NOT "
    + _PROJECT_DELETED.format(pid="{t}.project_id"),
    "artifacts": "NOT {t}.deleted AND NOT "
    + _EXPERIMENT_DELETED.format(eid="{t}.experiment_id")
    + " AND NOT "
    + _ITERATION_DELETED.format(iid="{t}.iteration_id"),
    "models": "NOT {t}.deleted AND NOT " + _PROJECT_DELETED.format(pid="{t}.project_id"),
    "model_versions": "NOT {t}.deleted AND NOT " + _MODEL_DELETED.format(mid="{t}.model_id"),
}


def visible(table: str, alias: str | None = None) -> str:
    """A SQL condition: the row of `table` (named `alias`, default the table) is shown."""
    return "(" + _VISIBLE[table].replace("{t}", alias or table) + ")"


def hidden_tables() -> frozenset[str]:
    """The tables whose rows `visible` judges."""
    return frozenset(_VISIBLE)
