"""The few Kubeflow Pipelines API calls a submission makes, through ``kfp.Client``.

Uploads, experiments and run creation go through the client's generated API objects:
``Client``'s own wrappers print links to stdout (HTML in IPython), which
would mix with our output and our ``--json``.

Each call's failure (an unreachable host, a refused token, an unknown
namespace) becomes one line that says what to check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError

if TYPE_CHECKING:
    from ..flavors.orchestrators import KubeflowOrchestrator

#: Seconds to wait for the KFP API to answer one call.
TIMEOUT_SECONDS = 30


class KfpApi:
    def __init__(self, config: KubeflowOrchestrator, token: str | None) -> None:
        import warnings

        import kfp

        self.host = config.host.rstrip("/")
        self.namespace = config.namespace
        self.service_account = config.service_account or None
        credentials = None
        if config.auth == "in-cluster":
            from kfp.client import ServiceAccountTokenVolumeCredentials

            credentials = ServiceAccountTokenVolumeCredentials()

        class Client(kfp.Client):
            def _load_context_setting_or_default(self) -> None:
                """The orchestrator's options only, never ``~/.config/kfp/context.json``.

                That file may hold another cluster's auth header or cookie, which
                would go to --host. And with the namespace given, ``kfp.Client``
                does not probe the health endpoint to guess it (five tries over 20 s
                when it fails, logging tracebacks).
                """
                self._context_setting = {"namespace": config.namespace or "kubeflow"}

        with self._explained("connect"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2": we know
            self.client = Client(
                host=self.host,
                namespace=config.namespace,
                existing_token=token,
                credentials=credentials,
            )

    def upload(self, name: str, package: Path) -> tuple[str, str]:
        """The pipeline's id and the id of the version holding ``package``: uploaded unless there."""
        version = f"{name}-{hashlib.sha256(package.read_bytes()).hexdigest()[:12]}"
        with self._explained("find the pipeline"):
            pipeline_id = self.client.get_pipeline_id(name)
        if pipeline_id is None:  # made empty: its versions are all named by their content
            import kfp_server_api

            with self._explained("create the pipeline"), _made_meanwhile():
                pipeline_id = self.client._pipelines_api.pipeline_service_create_pipeline(
                    pipeline=kfp_server_api.V2beta1Pipeline(
                        display_name=name,
                        description="from stackmagic: one task per notebook step",
                    )
                ).pipeline_id
            if pipeline_id is None:  # another submission made it first
                with self._explained("find the pipeline"):
                    pipeline_id = self.client.get_pipeline_id(name)
        with self._explained("list the pipeline's versions"):
            versions = (
                self.client.list_pipeline_versions(
                    pipeline_id,
                    page_size=1,
                    filter=_named(version),
                ).pipeline_versions
                or []
            )
        if not versions:
            with self._explained("upload a version of the pipeline"), _made_meanwhile():
                return pipeline_id, self.client._upload_api.upload_pipeline_version(
                    uploadfile=str(package), name=version, pipelineid=pipeline_id
                ).pipeline_version_id
            with self._explained("list the pipeline's versions"):  # uploaded by another meanwhile
                versions = (
                    self.client.list_pipeline_versions(
                        pipeline_id, page_size=1, filter=_named(version)
                    ).pipeline_versions
                    or []
                )
        if not versions:
            raise StackmagicError(
                f"Kubeflow Pipelines at {self.host} refused version {version} "
                "as existing, but lists no such version; try again"
            )
        return pipeline_id, versions[0].pipeline_version_id

    def experiment(self, name: str) -> str:
        """The id of the experiment ``name`` in the namespace, made if it does not exist."""
        import kfp_server_api

        api = self.client._experiment_api
        with self._explained(f"find experiment {name!r}"):
            found = api.experiment_service_list_experiments(
                filter=_named(name), namespace=self.namespace, page_size=1
            ).experiments
        if found:
            return found[0].experiment_id
        with self._explained(f"create experiment {name!r}"):
            return api.experiment_service_create_experiment(
                experiment=kfp_server_api.V2beta1Experiment(
                    display_name=name, namespace=self.namespace
                )
            ).experiment_id

    def start_run(
        self,
        experiment_id: str,
        pipeline_id: str,
        version_id: str,
        arguments: Mapping[str, Any],
        *,
        display_name: str,
    ) -> str:
        import kfp_server_api

        body = kfp_server_api.V2beta1Run(
            display_name=display_name,
            **self._run_fields(experiment_id, pipeline_id, version_id, arguments),
        )
        with self._explained("start the run"):
            # the generated API, not Client.run_pipeline, which prints its own link
            return self.client._run_api.run_service_create_run(run=body).run_id

    def run_state(self, run_id: str) -> str:
        with self._explained("read the run's state"):
            return str(self.client.get_run(run_id).state or "")

    def terminate_run(self, run_id: str) -> None:
        """Stop a run: KFP stops its pods and ends it CANCELED."""
        with self._explained("terminate the run"):
            self.client.terminate_run(run_id)

    def create_recurring_run(
        self,
        experiment_id: str,
        pipeline_id: str,
        version_id: str,
        arguments: Mapping[str, Any],
        *,
        display_name: str,
        description: str,
        cron: str,
    ) -> str:
        """A recurring run on ``cron`` (KFP's six fields): one run at a time, no backfill.

        A cluster that was down over a night starts one run when it is back, not
        every missed one; a run that outlasts the interval is not overlapped.
        """
        import kfp_server_api

        body = kfp_server_api.V2beta1RecurringRun(
            display_name=display_name,
            description=description,
            **self._run_fields(experiment_id, pipeline_id, version_id, arguments),
            trigger=kfp_server_api.V2beta1Trigger(
                cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron)
            ),
            mode=kfp_server_api.RecurringRunMode.ENABLE,
            max_concurrency="1",
            no_catchup=True,
        )
        with self._explained("create the recurring run"):
            api = self.client._recurring_run_api
            return api.recurring_run_service_create_recurring_run(
                recurring_run=body
            ).recurring_run_id

    def _run_fields(
        self, experiment_id: str, pipeline_id: str, version_id: str, arguments: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What a run and a recurring run both name: experiment, version, inputs, account."""
        import kfp_server_api

        return {
            "experiment_id": experiment_id,
            "pipeline_version_reference": kfp_server_api.V2beta1PipelineVersionReference(
                pipeline_id=pipeline_id, pipeline_version_id=version_id
            ),
            "runtime_config": kfp_server_api.V2beta1RuntimeConfig(parameters=dict(arguments)),
            "service_account": self.service_account,
        }

    def delete_recurring_run(self, recurring_run_id: str) -> None:
        """Delete a recurring run; one deleted already (in the KFP UI, say) is no error."""
        from kfp_server_api.exceptions import ApiException

        with self._explained("delete the recurring run"):
            try:
                self.client._recurring_run_api.recurring_run_service_delete_recurring_run(
                    recurring_run_id
                )
            except ApiException as error:
                if error.status != 404:
                    raise

    def run_url(self, run_id: str) -> str:
        return self._page(f"runs/details/{run_id}")

    def recurring_run_url(self, recurring_run_id: str) -> str:
        return self._page(f"recurringrun/details/{recurring_run_id}")

    def _page(self, route: str) -> str:
        """A page of the KFP UI: Kubeflow's dashboard serves it under /_/pipeline."""
        if self.host.endswith("/pipeline"):
            return f"{self.host[: -len('/pipeline')]}/_/pipeline/#/{route}"
        return f"{self.host}/#/{route}"

    @contextlib.contextmanager
    def _explained(self, action: str) -> Iterator[None]:
        """The API's failures as one line: what went wrong, and what to check."""
        from kfp_server_api.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        where = f"Kubeflow Pipelines at {getattr(self, 'host', '?')}"
        try:
            yield
        except ApiException as error:
            message = _api_message(error.body) or error.reason or ""
            fix = {
                401: "check the orchestrator's --token (or --auth)",
                403: f"check that the token's account may use namespace {self.namespace!r} "
                "(--namespace)",
                404: f"check --host (the KFP API URL) and that namespace {self.namespace!r} exists "
                "(--namespace)",
            }.get(error.status, "see the KFP API server's log")
            raise StackmagicError(
                f"{where} refused to {action} ({error.status}: {message}); {fix}"
            ) from None
        except ValueError as error:  # the client could not read an answer
            raise StackmagicError(
                f"{where} gave an answer stackmagic cannot read when asked to {action} ({error}); "
                "check that --host is a KFP v2 API"
            ) from None
        except (HTTPError, OSError) as error:
            raise StackmagicError(
                f"cannot reach {where} to {action} ({_reason(error)}); check --host and that the "
                "KFP API is reachable from here (`kubectl port-forward svc/ml-pipeline-ui 8080:80 "
                "-n kubeflow` for a cluster without an ingress)"
            ) from None


@contextlib.contextmanager
def _made_meanwhile() -> Iterator[None]:
    """Let a 409 (another submission made the same pipeline or version first) pass quietly."""
    from kfp_server_api.exceptions import ApiException

    try:
        yield
    except ApiException as error:
        if error.status != 409:
            raise


def _named(name: str) -> str:
    """A KFP list filter: the items whose display name is ``name``."""
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )


def _api_message(body: Any) -> str:
    """The human part of a KFP error body (JSON with ``message`` or ``error``), on one line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return " ".join(str(body).split())[:300]
    if isinstance(data, Mapping):
        text = data.get("message") or data.get("error") or ""
        return " ".join(str(text).split())[:300]
    return ""


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    return text.split(": ", 1)[-1] if "Connection refused" in text else text[:200]
