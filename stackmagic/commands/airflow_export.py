"""``pipeline export --to airflow``: a notebook's pipeline as an Airflow DAG file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..output import Message, Output
from ..registry import Registry

if TYPE_CHECKING:
    from ..notebook.spec import PipelineSpec


def export_airflow(
    spec: PipelineSpec, output: Path, stack: str | None, *, operator: str | None, replace: bool
) -> Output:
    """Write the DAG file; the bundle goes to the stack's artifact store, where its tasks fetch it.

    The stack's airflow orchestrator, if it has one, gives the operator and its
    options; another stack's file runs bash tasks (``python`` with stackmagic on
    the workers). The output is checked first, so a path that cannot be written
    uploads nothing.
    """
    from ..flavors.orchestrators import AirflowOrchestrator
    from ..notebook.exporter import export_bundle
    from ..open_stack import OpenStack
    from ..orchestrators.airflow import check_bundle, stack_dag_file
    from ..orchestrators.airflow_dag import DagPlan, dag_id_for
    from ..pipelines import store_bundle
    from ..scratch import ScratchFolder

    if output.is_dir():
        raise StackmagicError(f"{output} is a folder; give the DAG file to write, dags/NAME.py say")
    if output.suffix != ".py":
        raise StackmagicError(
            f"{output.name}: Airflow reads DAG files written in Python; name it .py (dags/NAME.py)"
        )
    if output.exists() and not replace:
        raise StackmagicError(f"{output} exists; give another file, or --force to replace it")
    if not output.parent.is_dir():
        raise StackmagicError(f"{output.parent} does not exist; create the folder first")
    with OpenStack.open(Registry.open(), stack) as opened, ScratchFolder("bundle") as scratch:
        config = opened.components[ComponentType.ORCHESTRATOR].config
        stored = config.stored() if isinstance(config, AirflowOrchestrator) else {}
        chosen = AirflowOrchestrator(**{**stored, **({"operator": operator} if operator else {})})
        bundle = export_bundle(spec, Path(scratch) / "bundle", exclude=opened.local_paths())
        check_bundle(chosen, opened, bundle)
        bundle_uri = store_bundle(opened.artifact_store, bundle)
        plan = DagPlan(dag_id_for(spec.name), bundle.parameters)
        written = stack_dag_file(chosen, opened, bundle, bundle_uri, plan)
    output.write_text(written.source, encoding="utf-8")
    return Message(
        f"Wrote the Airflow DAG {written.dag_id} ({len(bundle.steps)} {chosen.operator} tasks) "
        f"to {output}; its tasks fetch the bundle {bundle_uri}",
        {
            "dag_file": str(output),
            "dag_id": written.dag_id,
            "operator": chosen.operator,
            "bundle": bundle_uri,
            "steps": list(bundle.steps),
        },
    )
