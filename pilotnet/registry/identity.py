"""Node identities: the operator's identity provider, external IDs, token verification.

An operator ties nodes to the people or workloads of their own directory
(reference §1.6, §1.9.2):

* ``set_idp_config`` / ``get_idp_config``: the identity provider (its type
  in ``idp_type``: ``type`` names the message).  Type
  ``webhook`` is the one this registry talks to: a registration carrying an
  ``identity_token`` is verified by POSTing ``{"token": ...}`` to its URL (the
  answer ``{"verified", "external_id", "error"}`` decides), and
  ``validate_token`` asks it on the admin's behalf.  ``oidc``, ``saml``,
  ``entra_id`` and ``ldap`` are stored for the tools that read them, checked
  for shape only.  ``set_identity_webhook {url}`` is the reference's short form
  of ``set_idp_config {idp_type: "webhook", url}``.
* ``set_external_id`` / ``get_identity``: the external ID of a node, set by
  the admin or by a verified registration.

This module is sans-IO: it decides what to verify (:meth:`Identities.registration_check`,
:meth:`Identities.validation_check`) and keeps what was verified; the HTTP
exchange is :mod:`pilotnet.registry.identity_service`'s.
"""

import json
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from pilotnet.errors import CONNECTION_FAILED, NOT_FOUND, UNAVAILABLE
from pilotnet.registry import requests as fields
from pilotnet.registry.audit import rfc3339, url_origin
from pilotnet.registry.dispatch import Peer, Reply, Request, Route
from pilotnet.registry.entities import KeyedEntities
from pilotnet.registry.requests import RequestError
from pilotnet.webhooks.signing import new_secret
from pilotnet.webhooks.targets import TargetRefused, check_url

IDENTITY_KIND = "identity"
IDP_KIND = "idp_config"
IDP_KEY = "idp"
IDP_TYPES = ("oidc", "saml", "entra_id", "ldap", "webhook")
#: A token is opaque to us (a JWT, a SAML assertion's digest...); bounded all the same.
MAX_TOKEN = 8192
MAX_EXTERNAL_ID = 256
MAX_SETTING = 256
#: IdP settings besides ``type`` and ``url``: what each is, and which types require it.
IDP_FIELDS = ("issuer", "client_id", "tenant_id", "domain")
REQUIRED = {"oidc": ("client_id",), "saml": (), "entra_id": ("tenant_id", "client_id"), "ldap": (),
            "webhook": ()}
URL_SCHEMES = {"oidc": ("https",), "saml": ("https",), "entra_id": ("https",), "ldap": ("ldap", "ldaps"),
               "webhook": ("http", "https")}


@dataclass(frozen=True)
class Verification:
    """What the identity webhook must be asked: which URL, signed with which secret, about which token."""

    url: str
    secret: str
    token: str


@dataclass(frozen=True)
class Verdict:
    """The identity webhook's answer."""

    verified: bool
    external_id: str = ""
    error: str = ""


def _printable(value: str, name: str) -> str:
    if not value.isprintable():
        raise RequestError(f"invalid {name}: control characters are not allowed")
    return value


class Identities:
    """The identity state of the registry and the admin messages over it.

    ``core`` is what every concern may use of the registry (the directory,
    ``node``, ``require_admin``, ``audit``).  ``allow_private`` lets the
    identity webhook reach loopback and private addresses (the registry's
    ``--webhooks-allow-private``).
    """

    def __init__(self, core, *, allow_private: bool = False) -> None:
        self.core = core
        self.allow_private = allow_private
        self.state = KeyedEntities(IDENTITY_KIND, IDP_KIND)
        core.directory.attach(self.state)
        #: Called with ``(node_id, external_id, now)`` when a node gets an external ID (directory sync listens).
        self.external_id_observers: list[Callable[[int, str, float], None]] = []

    def routes(self) -> list[Route]:
        """The admin messages (``validate_token`` is the shell's front: it waits for the webhook)."""
        return [Route("set_idp_config", self._set_idp_config), Route("get_idp_config", self._get_idp_config,
                                                                       on_standby=True),
                Route("set_identity_webhook", self._set_identity_webhook),
                Route("set_external_id", self._set_external_id),
                Route("get_identity", self._get_identity, on_standby=True)]

    # -- what the shell verifies ---------------------------------------------------

    def registration_check(self, request: dict) -> Verification | None:
        """The verification a ``register`` needs: one when it carries a token and the IdP is a webhook.

        Without a webhook IdP a token is ignored (as the reference does); a
        token of the wrong shape is refused before anything is sent.
        """
        token = request.get("identity_token")
        if token is None or token == "":
            return None
        token = _printable(fields.text(request, "identity_token", max_length=MAX_TOKEN), "identity_token")
        idp = self.idp()
        if idp is None or idp["idp_type"] != "webhook":
            return None
        return Verification(idp["url"], idp["secret"], token)

    def validation_check(self, request: dict) -> Verification:
        """``validate_token``: admin only, and only a webhook IdP can answer it."""
        self.core.require_admin(request)
        token = _printable(fields.text(request, "token", max_length=MAX_TOKEN), "token")
        if not token:
            raise RequestError("token required")
        idp = self.idp()
        if idp is None:
            raise RequestError("no identity provider configured", code=NOT_FOUND,
                               hint="pilotctl idp set --type webhook --url <verifier>")
        if idp["idp_type"] != "webhook":
            raise RequestError(f"this registry verifies tokens only through a webhook identity provider, "
                               f"not {idp['idp_type']}", code=UNAVAILABLE,
                               hint="a webhook can front any provider: it receives {\"token\"} and answers "
                                    "{\"verified\", \"external_id\"} (docs/audit.md, Identity)")
        return Verification(idp["url"], idp["secret"], token)

    def verified(self, node_id: int, verdict: Verdict, now: float) -> None:
        """A registration whose token the webhook verified: the node gets its external ID."""
        self._set(node_id, verdict.external_id, "webhook", now)

    # -- state -------------------------------------------------------------------------

    def idp(self) -> dict | None:
        return self.state.get(IDP_KIND, IDP_KEY)

    def external_id(self, node_id: int) -> str:
        records = self.state.items(IDENTITY_KIND)
        # Asked for every lookup: without identities, no key text is built.
        record = records.get(str(node_id)) if records else None
        return record["external_id"] if record else ""

    def nodes_with(self, external_id: str) -> list[int]:
        return sorted(int(key) for key, record in self.state.items(IDENTITY_KIND).items()
                      if record["external_id"] == external_id)

    def _set(self, node_id: int, external_id: str, source: str, now: float) -> None:
        key = str(node_id)
        current = self.state.get(IDENTITY_KIND, key)
        held = (current["external_id"], current["source"]) if current is not None else ("", source)
        if held == (external_id, source):
            return  # a daemon re-registering with its token changes nothing: no write, no entry
        if not external_id:
            self.state.delete(IDENTITY_KIND, key)
        else:
            self.state.put(IDENTITY_KIND, key, {"external_id": external_id, "source": source, "set_at": now})
        self.core.audit.record("identity.external_id_set", now, node_id=node_id, external_id=external_id,
                               source=source)
        if external_id:
            for observer in self.external_id_observers:
                observer(node_id, external_id, now)

    # -- admin messages --------------------------------------------------------------

    def _set_idp_config(self, request: Request, peer: Peer, now: float) -> Reply:
        self.core.require_admin(request)
        idp_type = fields.text(request, "idp_type", max_length=32)
        if not idp_type or idp_type == "none":
            self.state.delete(IDP_KIND, IDP_KEY)
            self.core.audit.record("idp.configured", now, idp_type="none")
            return {"type": "set_idp_config_ok", "configured": False}
        if idp_type not in IDP_TYPES:
            raise RequestError(f'identity provider type must be one of {", ".join(IDP_TYPES)}, not "{idp_type}"')
        config = {"idp_type": idp_type, "url": self._url(idp_type, fields.text(request, "url", max_length=2048))}
        for name in IDP_FIELDS:
            value = _printable(fields.text(request, name, max_length=MAX_SETTING), name)
            if value:
                config[name] = value
        for name in REQUIRED[idp_type]:
            if name not in config:
                raise RequestError(f"a {idp_type} identity provider needs {name}")
        if idp_type == "webhook":
            config["secret"] = fields.text(request, "secret", max_length=256) or new_secret()
        self.state.put(IDP_KIND, IDP_KEY, config)
        self.core.audit.record("idp.configured", now, idp_type=idp_type, url=url_origin(config["url"]))
        reply = {"type": "set_idp_config_ok", "configured": True, **_shown(config)}
        if "secret" in config:
            # Shown once, to the admin who set it: the webhook checks X-Pilot-Signature with it.
            reply["secret"] = config["secret"]
        return reply

    def _url(self, idp_type: str, url: str) -> str:
        if not url:
            if idp_type == "entra_id":
                return ""  # the tenant's well-known authority is implied
            raise RequestError(f"a {idp_type} identity provider needs url")
        if idp_type == "webhook":
            try:
                check_url(url, allow_private=self.allow_private)
            except TargetRefused as error:
                raise RequestError(error.message, hint=error.hint) from None
            return url
        try:
            parts = urlsplit(url)
            parts.port
        except ValueError:
            raise RequestError(f'invalid url "{url}"') from None
        schemes = URL_SCHEMES[idp_type]
        if parts.scheme not in schemes or not parts.hostname or not url.isprintable() or not url.isascii():
            raise RequestError(f'a {idp_type} identity provider url must be {" or ".join(schemes)}://host..., '
                               f'not "{url}"')
        return url

    def _get_idp_config(self, request: Request, peer: Peer, now: float) -> Reply:
        self.core.require_admin(request)
        idp = self.idp()
        if idp is None:
            return {"type": "get_idp_config_ok", "configured": False}
        return {"type": "get_idp_config_ok", "configured": True, "verifies_tokens": idp["idp_type"] == "webhook",
                **_shown(idp)}

    def _set_identity_webhook(self, request: Request, peer: Peer, now: float) -> Reply:
        url = fields.text(request, "url", max_length=2048)
        current = self.idp()
        if not url and current is not None and current["idp_type"] != "webhook":
            raise RequestError(f"the identity provider is {current['idp_type']}, not a webhook: nothing cleared",
                               hint="pilotctl idp set --type none clears any provider")
        reply = self._set_idp_config({**request, "idp_type": "webhook" if url else ""}, peer, now)
        return {**reply, "type": "set_identity_webhook_ok"}

    def _set_external_id(self, request: Request, peer: Peer, now: float) -> Reply:
        self.core.require_admin(request)
        node_id = fields.uint(request, "node_id")
        external_id = _printable(fields.text(request, "external_id", max_length=MAX_EXTERNAL_ID), "external_id")
        self.core.node(node_id)
        self._set(node_id, external_id, "admin", now)
        return {"type": "set_external_id_ok", "node_id": node_id, "external_id": external_id}

    def _get_identity(self, request: Request, peer: Peer, now: float) -> Reply:
        self.core.require_admin(request)
        if request.get("external_id") is not None:
            external_id = fields.text(request, "external_id", max_length=MAX_EXTERNAL_ID)
            return {"type": "get_identity_ok", "external_id": external_id, "node_ids": self.nodes_with(external_id)}
        node_id = fields.uint(request, "node_id")
        record = self.state.get(IDENTITY_KIND, str(node_id))
        if record is None:
            if node_id not in self.core.directory.nodes:
                raise RequestError(f"node {node_id}: node not found", code=NOT_FOUND)
            return {"type": "get_identity_ok", "node_id": node_id, "external_id": "", "verified": False}
        return {"type": "get_identity_ok", "node_id": node_id, "external_id": record["external_id"],
                "verified": record["source"] == "webhook", "source": record["source"],
                "set_at": rfc3339(record["set_at"])}


def _shown(config: dict) -> dict:
    """The IdP settings without the webhook's secret."""
    return {key: value for key, value in config.items() if key != "secret"}


def verdict_from(status: int, answer: bytes | None) -> Verdict:
    """The identity webhook's answer as a :class:`Verdict`; :class:`RequestError` if it is no answer.

    A 2xx with ``{"verified": bool, "external_id"?: str, "error"?: str}``;
    anything else means the webhook could not say, which refuses the
    registration as a "no" would (the reference aborts it too).
    """
    if not 200 <= status < 300:
        raise RequestError(f"identity webhook answered HTTP {status}", code=CONNECTION_FAILED)
    try:
        document = json.loads(answer) if answer is not None else None
    except (UnicodeDecodeError, ValueError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("verified"), bool):
        raise RequestError('identity webhook answered no {"verified": true|false} object', code=CONNECTION_FAILED)
    external_id = document.get("external_id") or ""
    error = document.get("error") or ""
    if not isinstance(external_id, str) or not isinstance(error, str):
        raise RequestError("identity webhook answered external_id or error that is not a string",
                           code=CONNECTION_FAILED)
    if document["verified"] and (not external_id or len(external_id) > MAX_EXTERNAL_ID
                                 or not external_id.isprintable()):
        raise RequestError(f"identity webhook verified a token without a printable external_id of at most "
                           f"{MAX_EXTERNAL_ID} characters", code=CONNECTION_FAILED)
    # The webhook's reason reaches the client: bounded and printable.
    error = "".join(char if char.isprintable() else " " for char in error[:MAX_SETTING])
    return Verdict(document["verified"], external_id if document["verified"] else "", error)
