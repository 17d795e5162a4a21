"""The function each Kubeflow task runs: the kfp SDK embeds its source in the compiled pipeline.

It only hands over to the runtime, which the step image has installed. No
``from __future__ import annotations`` here: the kfp SDK reads the
annotations as types to learn the task's inputs and outputs.
"""

from kfp import dsl


def stackmagic_step(
    step: str,
    run: str,
    kfp_run: str,
    bundle: str,
    stores: dict,
    parameters: dict,
    options: dict,
    notebook: dsl.Output[dsl.HTML],
) -> None:
    """One step of a stackmagic bundle, recorded in the stack's stores."""
    from stackmagic.google_secrets import take_store_secrets
    from stackmagic.runtime.task import run_task

    take_store_secrets(options.pop("store_secret", None), stores)  # Vertex AI's tasks
    run_task(
        step=step,
        run_id=run or kfp_run,
        bundle_uri=bundle,
        stores=stores,
        parameters=parameters,
        options=options,
        html_path=notebook.path,
    )
