"""The simulated models' API key, when an app names it by reference.

An app that runs on the sim (``App.sim = True``) may give the sim provider its key
as a secret reference, ``providers={"sim": Provider(..., api_key="secret://sim-api-key")}``
(the helpdesk example does), so that the key is resolved, refreshed on a 401 and
rotated exactly as a real provider's key would be (``stalwart verify`` SE-1 rotates
it under load). The sim's key opens nothing but the sim, and on a fresh machine
nobody has stored it: the node starting such an app creates it -- a random value --
in the local vault (``STALWART_VAULT``, default ``.stalwart/vault.enc``) when the
vault does not hold it yet. Only the local vault is written to, and only for the
sim: with the env or HashiCorp provider a missing key stops the start with a message
saying where to put it, and a real provider's key is never created.
"""

from __future__ import annotations

import base64
import os

from stalwart.agent import App
from stalwart.errors import StalwartError, StartError
from stalwart.guard import LocalVault, is_secret_ref, provider_from_env, secret_name
from stalwart.observe import EventBus

__all__ = ["provision_sim_key"]


def provision_sim_key(app: App, events: EventBus) -> bool:
    """Make the sim provider's ``secret://`` key resolvable (see the module docstring).

    Returns True when a key was created. Raises :class:`StartError` when the key is
    missing from a provider this must not write to.
    """
    provider = app.providers.get("sim")
    ref = provider.api_key if provider is not None else None
    if not app.sim or not isinstance(ref, str) or not is_secret_ref(ref):
        return False
    name = secret_name(ref)
    try:
        secrets = provider_from_env()
        if isinstance(secrets, LocalVault):
            value = "sk-sim-" + base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
            created = secrets.ensure(name, value)
            if created:
                events.emit("sim_key_provisioned", secret=name, vault=str(secrets.path))
            return created
        secrets.get(name)
    except StalwartError as exc:
        raise StartError(
            f"the sim's API key {ref} cannot be resolved from the {secrets_kind()} secrets "
            f"provider: {exc}"
        ) from None
    return False


def secrets_kind() -> str:
    """The secrets provider ``STALWART_SECRETS`` selects (for messages)."""
    return os.environ.get("STALWART_SECRETS", "vault")
