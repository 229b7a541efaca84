"""Clone (fork) an iteration: a new one in the same project, started from another's params
and config, with its lineage kept (`cloned_from`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deardiary.schemas import ids
from deardiary.schemas.errors import InvalidArgument, NotFound
from deardiary.schemas.events import ExperimentCreated, IterationStarted, ParamsLogged

if TYPE_CHECKING:
    from .client import Client
    from .iteration import Iteration


def _quoted(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise InvalidArgument(f"not an id: {text!r}")
    return text


def clone_iteration(
    client: Client,
    source: str,
    *,
    name: str = "",
    experiment: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iteration:
    """A new RUNNING iteration with `source`'s params (every section, types kept) and
    config, in its experiment or in `experiment` (a name in the same project); `params`
    override copied ones (default section). Use it with `with` like start_iteration."""
    from .config import flatten
    from .iteration import Iteration

    rows = client.sql(
        "SELECT i.experiment_id, i.project_id, i.name, i.config, p.name AS project"
        " FROM iterations i JOIN projects p USING (project_id)"
        f" WHERE i.iteration_id = '{_quoted(source)}' AND NOT i.deleted"
    ).to_pylist()
    if not rows:
        raise NotFound(f"iteration {source!r} not found")
    found = rows[0]
    project_id, experiment_id = str(found["project_id"]), str(found["experiment_id"])
    config = found["config"]
    config = json.loads(config) if isinstance(config, str) else (config or {})
    copied = client.sql(
        "SELECT section, key, value, type FROM params"
        f" WHERE iteration_id = '{_quoted(source)}' ORDER BY section, key"
    ).to_pylist()
    emit = client.buffer.emit
    if experiment is not None:
        experiment_id = ids.experiment_id(project_id, experiment)
        emit(ExperimentCreated(experiment_id=experiment_id, project_id=project_id, name=experiment))
    client.project_names[project_id] = str(found["project"])
    iteration_id = ids.new_id()
    emit(
        IterationStarted(
            iteration_id=iteration_id,
            experiment_id=experiment_id,
            project_id=project_id,
            name=name or f"{found['name'] or source[:8]} (clone)",
            tags=dict(tags or {}),
            cloned_from=source,
        )
    )
    sections: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for row in copied:
        values, types = sections.setdefault(str(row["section"]), ({}, {}))
        values[str(row["key"])] = str(row["value"])
        if row["type"] != "str":
            types[str(row["key"])] = str(row["type"])
    if params:
        values, types, nested = flatten(params)
        base_values, base_types = sections.setdefault("", ({}, {}))
        base_values.update(values)
        for key in values:
            base_types.pop(key, None)
        base_types.update(types)
        if nested:
            config[""] = {**config.get("", {}), **nested}
    for section, (values, types) in sorted(sections.items()):
        emit(
            ParamsLogged(
                iteration_id=iteration_id,
                params=values,
                section=section,
                types=types,  # type: ignore[arg-type]
                config=config.get(section, {}),
            )
        )
    iteration = Iteration(client, iteration_id, experiment_id, project_id)
    client.shipper.start_heartbeat(iteration_id)
    return iteration
