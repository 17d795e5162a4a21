"""A FAKE Azure, for tests: Azure ML, Microsoft Entra ID and Key Vault cannot run here.

It serves, over TLS on 127.0.0.1 (the Azure SDKs refuse a plain-HTTP
authority and bearer tokens over plain HTTP), the REST endpoints the real
``azure-ai-ml``, ``azure-identity`` and ``azure-keyvault-secrets`` call for the
azureml step operator:

- Entra ID: a tenant's OpenID configuration, and client-credentials tokens for
  the service principals it knows, refused for a wrong secret or an unknown
  resource; a token is good for the one resource (audience) it was asked for.
- Resource Manager: the workspace (whose ``discoveryUrl`` points back here),
  anonymous environment versions, and command jobs (create, get, cancel),
  for principals with access to the workspace only.
- The region's discovery document and run history (a run's details: its status,
  log files as SAS URLs, its error), and the SAS URL's blob: the job's log.
- Key Vault: a secret's latest version, behind Key Vault's challenge (the first
  request has no token; the 401 names the tenant and the resource). Key Vault's
  resource is a domain the vault's host is under (vault.azure.net for
  NAME.vault.azure.net); for 127.0.0.1 the fake names ``0.0.1``.

It is as strict as the service on a job to create: checked field by field and
refused with a 400 and Azure's error body. An accepted job runs its command at
once in a tests/job_sandbox.SandboxJob with the job's environment variables,
plus (for a job with a managed identity) the credentials of the identity the
fake gives jobs, and its state and log follow the sandbox. A test makes an
image unpullable (the job fails before its command) or preempts a Spot job
(before its command starts, or while it runs).
Every request is recorded, headers and body.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import secrets
import shlex
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_http import Request
from job_sandbox import SandboxJob

SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "00000000-0000-0000-0000-000000000000", "ml", "team"
TENANT = "11111111-1111-1111-1111-111111111111"
RUNNER = "22222222-2222-2222-2222-222222222222"  # the service principal that submits jobs
JOB_IDENTITY = "33333333-3333-3333-3333-333333333333"  # the compute's managed identity
PROVIDER = "/providers/Microsoft.MachineLearningServices"
WORKSPACE_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    f"{PROVIDER}/workspaces/{WORKSPACE}"
)
STD_LOG = "user_logs/std_log.txt"
Answer = tuple[int, Any, dict[str, str]]
Route = tuple[str, str, Callable[..., Answer]]


def tls_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made here, for the fake only): cert, key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fake-azure.pem", folder / "fake-azure.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class FakeJob:
    resource: dict[str, Any]
    sandbox: SandboxJob | None = None
    #: (code, message) of a job that fails before its command runs
    failure: tuple[str, str] | None = None
    preempted: bool = False
    asked: int = 0
    sas: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = self.resource["properties"]
        return properties

    def status(self) -> str:
        """As Azure ML moves a job on: queued when first asked, then its container's state."""
        if self.asked <= 1:
            return "Preparing" if self.failure else "Queued"
        if self.failure or self.preempted or self.sandbox is None:
            return "Failed"
        return {
            "running": "Running",
            "succeeded": "Completed",
            "failed": "Failed",
            "stopped": "Canceled",
        }[self.sandbox.state()]

    def error(self) -> dict[str, Any] | None:
        """The run history's error of a failed job."""
        if self.status() != "Failed":
            return None
        if self.preempted:
            code, message = (
                "ServiceError",
                "AzureMLCompute job failed. PreemptionError: the job's Spot VM was pre-empted; "
                "the job was not restarted",
            )
        elif self.failure:
            code, message = self.failure
        else:
            code, message = (
                "UserError",
                f"Execution failed. User process exited with status code "
                f"{self.sandbox.exit_code if self.sandbox else '?'}; see {STD_LOG}",
            )
        return {"error": {"code": code, "message": message, "severity": 2}}


@dataclass
class FakeAzure:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    #: where accepted jobs run (a folder each), and the certificate they trust
    sandboxes: Path = Path()
    certificate: Path = Path()
    #: service principals: client id -> secret
    principals: dict[str, str] = field(default_factory=dict)
    #: who may use the workspace, and who may get the vault's secrets
    workspace_users: set[str] = field(default_factory=lambda: {RUNNER})
    vault_readers: set[str] = field(default_factory=lambda: {JOB_IDENTITY})
    secrets: dict[str, str] = field(default_factory=dict)
    computes: set[str] = field(default_factory=set)
    #: images the registry cannot give the compute: such a job fails before its command
    unpullable: set[str] = field(default_factory=set)
    #: the next so many Spot jobs lose their VM before their command starts
    preempt_next: int = 0
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    #: token -> (client id, resource)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def vault_resource(self) -> str:
        return f"https://0.0.1:{urlsplit(self.url).port}"

    def sent_jobs(self) -> list[dict[str, Any]]:
        """The bodies of the jobs this fake was asked to create, in order."""
        return [
            json.loads(r.body)
            for r in self.requests
            if r.method == "PUT" and re.search(r"/jobs/[^/?]+\?", r.path)
        ]

    def preempt(self, name: str) -> None:
        """Take a Spot job's VM back, as Azure does: its container is killed, the job fails."""
        job = self.jobs[name]
        assert (job.properties.get("queueSettings") or {}).get("jobTier") == "Spot", name
        job.preempted = True
        assert job.sandbox is not None
        job.sandbox.stop()

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        open_routes: list[Route] = [
            ("GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", self._openid),
            ("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self._token),
            ("GET", r"/discovery/workspaces/[^/]+", self._discovery),
            ("GET", r"/blobs/(?P<name>[^/]+)/" + re.escape(STD_LOG), self._blob),
        ]
        arm_routes: list[Route] = [
            ("GET", WORKSPACE_PATH, self._workspace),
            (
                "PUT",
                WORKSPACE_PATH + r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
                self._put_environment,
            ),
            ("PUT", WORKSPACE_PATH + r"/jobs/(?P<name>[^/]+)", self._put_job),
            ("GET", WORKSPACE_PATH + r"/jobs/(?P<name>[^/]+)", self._get_job),
            ("POST", WORKSPACE_PATH + r"/jobs/(?P<name>[^/]+)/cancel", self._cancel_job),
            (
                "GET",
                r"/history/v1\.0" + WORKSPACE_PATH + r"/runs/(?P<name>[^/]+)/details",
                self._run_details,
            ),
        ]
        vault_routes: list[Route] = [
            ("GET", r"/secrets/(?P<name>[^/]+)/?(?:[0-9a-f]{32})?", self._secret)
        ]
        for routes, audience, users in (
            (open_routes, None, set()),
            (arm_routes, self.url, self.workspace_users),
            (vault_routes, self.vault_resource, self.vault_readers),
        ):
            for verb, pattern, route in routes:
                match = re.fullmatch(pattern, path)
                if verb != method or not match:
                    continue
                if audience is None:
                    return route(query=query, body=body, **match.groupdict())
                refusal = self._refused(headers, query, audience, users, path)
                return refusal or route(query=query, body=body, **match.groupdict())
        return _error(404, "NoSuchRoute", f"no route {method} {path} in the fake Azure")

    # -- Microsoft Entra ID ---------------------------------------------------------------------

    def _openid(self, tenant: str, **_: Any) -> Answer:
        if tenant != TENANT:
            return _entra_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.")
        base = f"{self.url}/{tenant}"
        return (
            200,
            {
                "issuer": f"{base}/v2.0",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            },
            {},
        )

    def _token(self, tenant: str, body: bytes, **_: Any) -> Answer:
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        client, scope = form.get("client_id", ""), form.get("scope", "")
        if tenant != TENANT or form.get("grant_type") != "client_credentials":
            return _entra_error(400, "invalid_request", "AADSTS900144: no client_credentials grant")
        if client not in self.principals or form.get("client_secret") != self.principals[client]:
            return _entra_error(
                401, "invalid_client", f"AADSTS7000215: Invalid client secret provided for {client}"
            )
        resource = scope.removesuffix("/.default")
        if not scope.endswith("/.default") or resource not in (self.url, self.vault_resource):
            return _entra_error(
                400, "invalid_scope", f"AADSTS500011: The resource {resource} is not in the tenant"
            )
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (client, resource)
        answer = {"token_type": "Bearer", "expires_in": 3599, "access_token": token}
        return 200, answer, {}

    def _refused(
        self,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        audience: str,
        users: set[str],
        path: str,
    ) -> Answer | None:
        """Why a request for a resource is refused (its token, or its api-version), if it is."""
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if audience == self.vault_resource and token not in self.tokens:
            challenge = f'Bearer authorization="{self.url}/{TENANT}", resource="{audience}"'
            missing = "AKV10000: Request is missing a Bearer or PoP token."
            return _error(401, "Unauthorized", missing, {"www-authenticate": challenge})
        if token not in self.tokens or self.tokens[token][1] != audience:
            return _error(401, "InvalidAuthenticationToken", f"No valid token for {audience}.")
        client = self.tokens[token][0]
        if client not in users:
            return _error(403, "AuthorizationFailed", f"The client '{client}' may not use {path}.")
        if "/history/" not in path and not query.get("api-version"):
            return _error(400, "MissingApiVersionParameter", "The api-version query is required.")
        return None

    # -- Azure Machine Learning -----------------------------------------------------------------

    def _workspace(self, **_: Any) -> Answer:
        properties = {
            "workspaceId": "44444444-4444-4444-4444-444444444444",
            "discoveryUrl": f"{self.url}/discovery/workspaces/{WORKSPACE}",
            "provisioningState": "Succeeded",
        }
        kind = "Microsoft.MachineLearningServices/workspaces"
        workspace = {
            "id": WORKSPACE_PATH,
            "name": WORKSPACE,
            "type": kind,
            "location": "westeurope",
        }
        return 200, {**workspace, "properties": properties}, {}

    def _discovery(self, **_: Any) -> Answer:
        services = ("api", "catalog", "experimentation", "history", "modelmanagement", "pipelines")
        return 200, {service: self.url for service in services}, {}

    def _put_environment(self, name: str, version: str, body: bytes, **_: Any) -> Answer:
        properties = _json(body).get("properties")
        image = properties.get("image") if isinstance(properties, dict) else None
        if not re.fullmatch(r"[\w.\-]+(?::\d+)?/[\w./\-]+(?::[\w.\-]+)?", str(image)):
            return _error(400, "UserError", f"Environment image {image!r} is no image reference.")
        resource_id = f"{WORKSPACE_PATH}/environments/{name}/versions/{version}"
        self.environments[resource_id] = {
            "id": resource_id,
            "name": version,
            "type": "Microsoft.MachineLearningServices/workspaces/environments/versions",
            "properties": properties,
        }
        return 201, self.environments[resource_id], {}

    def _put_job(self, name: str, body: bytes, **_: Any) -> Answer:
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}", name):
            return _error(400, "UserError", f"Job name {name!r} may hold letters, digits, - and _.")
        if name in self.jobs:
            return _error(409, "UserError", f"A job named {name} exists already in the workspace.")
        properties = _json(body).get("properties")
        refusal = job_refusal(properties, self.environments, self.computes)
        if refusal:
            return _error(400, "UserError", refusal)
        assert isinstance(properties, dict)
        job = FakeJob(
            {
                "id": f"{WORKSPACE_PATH}/jobs/{name}",
                "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                "properties": {**properties, "status": "NotStarted"},
            }
        )
        image = self.environments[properties["environmentId"]]["properties"]["image"]
        if image in self.unpullable:
            job.failure = ("UserError", f"Failed to pull Docker image {image}: unauthorized")
        elif self.preempt_next and (properties.get("queueSettings") or {}).get("jobTier") == "Spot":
            self.preempt_next -= 1
            job.preempted = True
        else:
            job.sandbox = SandboxJob(
                shlex.split(properties["command"]),
                self.sandboxes / name,
                self._job_environment(properties),
            )
        self.jobs[name] = job
        return 201, job.resource, {}

    def _job_environment(self, properties: dict[str, Any]) -> dict[str, str]:
        """What the job's container gets: its variables, its identity's credentials, the CA."""
        environment = {**properties.get("environmentVariables", {})}
        if (properties.get("identity") or {}).get("identityType") == "Managed":
            environment.update(
                {
                    "AZURE_CLIENT_ID": JOB_IDENTITY,
                    "AZURE_TENANT_ID": TENANT,
                    "AZURE_CLIENT_SECRET": self.principals[JOB_IDENTITY],
                    "AZURE_AUTHORITY_HOST": self.url,
                }
            )
        trust = str(self.certificate)
        return {**environment, "REQUESTS_CA_BUNDLE": trust, "SSL_CERT_FILE": trust}

    def _get_job(self, name: str, **_: Any) -> Answer:
        if name not in self.jobs:
            return _error(404, "UserError", f"Job {name} was not found.")
        job = self.jobs[name]
        job.asked += 1
        job.properties["status"] = job.status()
        return 200, job.resource, {}

    def _cancel_job(self, name: str, **_: Any) -> Answer:
        if name not in self.jobs:
            return _error(404, "UserError", f"Job {name} was not found.")
        self.cancelled.append(name)
        sandbox = self.jobs[name].sandbox
        if sandbox is not None:
            sandbox.stop()
        location = f"{self.url}{WORKSPACE_PATH}/operationResults/{uuid.uuid4()}"
        return 202, None, {"location": location, "retry-after": "5"}

    def _run_details(self, name: str, **_: Any) -> Answer:
        if name not in self.jobs:
            return _error(404, "UserError", f"Run {name} was not found.")
        job = self.jobs[name]
        details: dict[str, Any] = {
            "runId": name,
            "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            "status": job.status(),
            "target": job.properties.get("computeId") or "serverless",
            "tags": job.properties.get("tags", {}),
            "logFiles": {},
        }
        if job.sandbox is not None:
            details["logFiles"][STD_LOG] = (
                f"{self.url}/blobs/{name}/{STD_LOG}?sv=2019-07-07&sr=b&sp=r&sig={job.sas}"
            )
        if job.error():
            details["error"] = job.error()
        return 200, details, {}

    def _blob(self, name: str, query: Mapping[str, list[str]], **_: Any) -> Answer:
        job = self.jobs.get(name)
        if job is None or job.sandbox is None or query.get("sig") != [job.sas]:
            return _error(403, "AuthenticationFailed", "Server failed to authenticate the request.")
        lines = list(job.sandbox.lines)
        return 200, "".join(f"{line}\n" for line in lines), {}

    # -- Key Vault ------------------------------------------------------------------------------

    def _secret(self, name: str, **_: Any) -> Answer:
        if name not in self.secrets:
            return _error(404, "SecretNotFound", f"A secret named {name} is not in this key vault.")
        identifier = f"{self.url}/secrets/{name}/{uuid.uuid5(uuid.NAMESPACE_URL, name).hex}"
        answer = {"value": self.secrets[name], "id": identifier, "attributes": {"enabled": True}}
        return 200, answer, {}


def job_refusal(properties: Any, environments: Mapping[str, Any], computes: set[str]) -> str | None:
    """Why Azure ML refuses to create a job with these properties (its first bad field)."""
    if not isinstance(properties, dict):
        return "The request body must be a job with properties."
    if properties.get("jobType") != "Command":
        return f"jobType {properties.get('jobType')!r}: this workspace's fake takes Command jobs."
    if not (isinstance(properties.get("command"), str) and properties["command"].strip()):
        return "A command job needs a non-empty command."
    if properties.get("environmentId") not in environments:
        return f"Environment {properties.get('environmentId')!r} was not found in the workspace."
    for mapping in ("tags", "environmentVariables", "properties"):
        value = properties.get(mapping, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            return f"{mapping} must map names to strings."
    compute, resources = properties.get("computeId"), properties.get("resources") or {}
    tier = (properties.get("queueSettings") or {}).get("jobTier")
    if compute:
        if compute.rsplit("/computes/", 1)[-1] not in computes or not compute.startswith(
            WORKSPACE_PATH
        ):
            return f"Compute {compute} was not found in the workspace."
        if tier == "Spot":
            return "The Spot job tier is for serverless compute only."
    elif not re.fullmatch(r"Standard_[A-Za-z0-9_]+", str(resources.get("instanceType"))):
        return "Serverless compute needs resources.instanceType, a VM size such as Standard_D4s_v3."
    if tier not in (None, "Spot", "Basic", "Standard", "Premium"):
        return f"queueSettings.jobTier {tier!r} is not one of Spot, Basic, Standard, Premium."
    limits = properties.get("limits") or {}
    if limits and (
        limits.get("jobLimitsType") != "Command"
        or not re.fullmatch(r"P(?:\d+D)?T?(?:\d+H)?(?:\d+M)?(?:\d+S)?", str(limits.get("timeout")))
    ):
        return "limits must be Command limits with an ISO 8601 timeout (PT1H say)."
    identity = (properties.get("identity") or {}).get("identityType")
    if identity not in (None, "Managed", "UserIdentity", "AMLToken"):
        return f"identity.identityType {identity!r} is not one of Managed, UserIdentity, AMLToken."
    return None


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    """Azure's error body (Resource Manager, run history, Key Vault)."""
    return status, {"error": {"code": code, "message": message}}, headers or {}


def _entra_error(status: int, error: str, description: str) -> Answer:
    """Microsoft Entra ID's error body, which MSAL reads."""
    return status, {"error": error, "error_description": description}, {}
