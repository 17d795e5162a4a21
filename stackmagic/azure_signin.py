"""Signing in to Azure, reading Key Vault, and Azure's errors in one line: what the
Azure ML step operator and the azure-vm orchestrator share.

Only azure-identity (and azure-keyvault-secrets for a secret) are imported, and
only when called: a VM or a job reads its secret without Azure's other SDKs.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from .errors import StackmagicError

#: Microsoft Entra authorities that Microsoft's instance discovery knows
ENTRA_HOSTS = ("login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us")


def authority_options(host: str) -> dict[str, Any]:
    """Credential options for a Microsoft Entra authority other than the public one; a
    private cloud's (Azure Stack's) is unknown to Microsoft's instance discovery."""
    if not host:
        return {}
    return {
        "authority": host,
        "disable_instance_discovery": urlsplit(host).hostname not in ENTRA_HOSTS,
    }


def default_credential(**options: Any) -> Any:
    """The Azure chain (a service principal's variables, az login, a managed identity), at
    the authority AZURE_AUTHORITY_HOST names (Azure's public one)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(
        **options, **authority_options(os.environ.get("AZURE_AUTHORITY_HOST", ""))
    )


def explained(action: str, error: Exception, advice: str = "", *, sign_in: str) -> StackmagicError:
    """One line for an Azure error: what failed, Azure's own code and words, what to do
    (``sign_in`` when signing in is what failed)."""
    if type(error).__name__ == "ClientAuthenticationError":
        advice = sign_in
    detail = getattr(getattr(error, "error", None), "code", None)
    message = getattr(getattr(error, "error", None), "message", None) or getattr(
        error, "message", None
    )
    words = f"{detail}: {message}" if detail else str(message or error).strip().splitlines()[0]
    words = words.rstrip(".")
    return StackmagicError(f"cannot {action}: {words}" + (f"; {advice}" if advice else ""))


def read_key_vault_secret(
    vault_url: str, name: str, *, advice: str, identity_client_id: str | None = None
) -> str:
    """A Key Vault secret's text, read with the managed identity of where this runs
    (``identity_client_id`` picks a user-assigned one where several may be)."""
    from azure.keyvault.secrets import SecretClient

    credential = default_credential(managed_identity_client_id=identity_client_id)
    try:
        text = SecretClient(vault_url, credential).get_secret(name).value
    except Exception as error:
        raise explained(
            f"read the secret {name!r} from {vault_url}", error, advice, sign_in=advice
        ) from None
    return str(text or "")
