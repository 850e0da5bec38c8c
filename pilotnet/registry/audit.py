"""The registry's audit log: every mutation as an entry in a bounded ring (reference §1.16).

:meth:`AuditLog.run` wraps the request handlers (:meth:`Registry.handle`
calls it): it notes what a request will change, runs the handler, and for a
successful mutation appends an entry ``{event_id, timestamp, action,
network_id?, node_id?, details}`` with the reference's action names.  Reaped
nodes are entered by :meth:`AuditLog.reaped`.

Entries go to the observers the shell registered (the registry webhook, the
audit export); they must be cheap (queue and return).  The log is an entity
part of the directory (:mod:`pilotnet.registry.entities`): its entries and
settings are stored with the request that made them and replicated to
standbys.  Nothing here does I/O: the shell in
:mod:`pilotnet.registry.audit_service` delivers.

The admin messages live here too (``get_audit_log``, ``set_webhook``,
``get_webhook``, ``get_webhook_dlq``, ``set_audit_export``,
``get_audit_export``); the registry dispatches them like its own.
"""

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

from pilotnet.registry import requests as fields
from pilotnet.registry.directory import OWNER
from pilotnet.registry.dispatch import Route
from pilotnet.registry.requests import RequestError
from pilotnet.webhooks.signing import new_secret
from pilotnet.webhooks.targets import TargetRefused, check_address, check_url, literal_address

CAPACITY = 1000
DEFAULT_LIMIT = 100
MAX_DETAIL = 256
#: Stored entity kinds (beside the directory's): ``audit`` (key: zero-padded event id) and
#: ``audit_config`` (keys ``webhook``, ``export``, ``counter``).
ENTRY_KIND = "audit"
CONFIG_KIND = "audit_config"
KINDS = (ENTRY_KIND, CONFIG_KIND)
EXPORT_FORMATS = ("json", "splunk_hec", "syslog_cef")
SYSLOG_SCHEMES = ("udp", "tcp")


@dataclass
class AuditEntry:
    event_id: int
    timestamp: float
    action: str
    network_id: int | None = None
    node_id: int | None = None
    details: dict = field(default_factory=dict)

    def stored(self) -> dict:
        return {"event_id": self.event_id, "timestamp": self.timestamp, "action": self.action,
                "network_id": self.network_id, "node_id": self.node_id, "details": self.details}

    def describe(self) -> dict:
        """The reference's ``get_audit_log`` entry: RFC 3339 time, ``details`` as ``k=v, k=v``."""
        entry = {"event_id": self.event_id, "timestamp": rfc3339(self.timestamp), "action": self.action}
        if self.network_id is not None:
            entry["network_id"] = self.network_id
        if self.node_id is not None:
            entry["node_id"] = self.node_id
        if self.details:
            entry["details"] = ", ".join(f"{key}={value}" for key, value in self.details.items())
        return entry

    def document(self) -> dict:
        """What webhooks and exports carry: the reference's webhook fields, ``details`` as an object."""
        document = {"event_id": self.event_id, "action": self.action, "timestamp": rfc3339(self.timestamp),
                    "details": self.details}
        if self.network_id is not None:
            document["network_id"] = self.network_id
        if self.node_id is not None:
            document["node_id"] = self.node_id
        return document


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _short(value):
    """Details are bounded: long texts are cut, so one request cannot bloat the ring."""
    if isinstance(value, str) and len(value) > MAX_DETAIL:
        return value[:MAX_DETAIL] + "..."
    return value


class AuditLog:
    """The ring of entries, the audit settings, and the admin messages over them."""

    def __init__(self, capacity: int = CAPACITY, *, allow_private_targets: bool = False):
        self.entries: deque[AuditEntry] = deque(maxlen=capacity)
        self.next_id = 1
        #: An event ID from the shared database's sequence, or None: then ``next_id`` counts
        #: (several registries on one database must not hand out the same IDs).
        self.shared_event_id: Callable[[], int | None] = lambda: None
        # The IDs of the entries in the ring: what the change feed brings back is added once.
        self._held: set[int] = set()
        self.allow_private_targets = allow_private_targets
        #: ``webhook``: {url, secret}; ``export``: {format, endpoint, ...}.
        self.settings: dict[str, dict] = {}
        #: Called with each new :class:`AuditEntry`.
        self.observers: list[Callable[[AuditEntry], None]] = []
        #: Called with ``(name, settings or None)`` when ``webhook`` or ``export`` changes.
        self.settings_observers: list[Callable[[str, dict | None], None]] = []
        #: Set by the shell: the delivery counters and dead letters of the registry webhook.
        self.webhook_stats: Callable[[], dict] = lambda: {}
        self.webhook_dead_letters: Callable[[], list] = lambda: []
        self.export_stats: Callable[[], dict] = lambda: {}
        self._changes: list = []

    # -- recording ---------------------------------------------------------------

    def record(self, action: str, now: float, *, network_id=None, node_id=None, **details) -> AuditEntry:
        event_id = self.shared_event_id()
        if event_id is None:
            event_id, self.next_id = self.next_id, self.next_id + 1
        entry = AuditEntry(event_id, now, action, network_id, node_id,
                           {key: _short(value) for key, value in details.items() if value is not None})
        evicted = self._append(entry)
        if evicted is not None:
            self._changes.append((ENTRY_KIND, _key(evicted.event_id), None))
        self._changes.append((ENTRY_KIND, _key(entry.event_id), entry.stored()))
        for observer in self.observers:
            observer(entry)
        return entry

    def run(self, kind, handler, request, peer, now, registry):
        """Run ``handler`` and audit the mutation it made, if it made one."""
        derive = _AUDITED.get(kind)
        if derive is None:
            return handler(request, peer, now)
        before = derive.before(registry, request)
        reply = handler(request, peer, now)
        if reply.get("type") != "error":
            for action, where, details in derive.after(registry, request, reply, before):
                self.record(action, now, **where, **details)
        return reply

    def reaped(self, node_ids, now: float):
        for node_id in node_ids:
            self.record("node.reaped", now, node_id=node_id)

    # -- persistence -----------------------------------------------------------------

    def take_changes(self) -> list:
        """Stored entities changed since the last call, as ``(kind, key, value or None)``."""
        changes, self._changes = self._changes, []
        return changes

    # The audit log is an EntityPart (pilotnet.registry.entities) of the directory: its
    # entries and settings are stored with each request and replicated to standbys.
    kinds = KINDS

    def entities(self) -> list:
        return [(ENTRY_KIND, _key(entry.event_id), entry.stored()) for entry in self.entries] + \
            [(CONFIG_KIND, name, value) for name, value in self.settings.items()]

    def restore(self, kind: str, key: str, value):
        if kind == ENTRY_KIND:
            entry = AuditEntry(**value)
            self._append(entry)
            self.next_id = max(self.next_id, entry.event_id + 1)
        elif key in ("webhook", "export"):
            self.settings[key] = value

    def apply(self, kind: str, key: str, value):
        """A change another registry made: an entry it recorded (or let go of), a setting.

        Entries arrive in the order they were recorded, so appending keeps the
        ring ordered; a changed setting is announced, so this registry's shell
        delivers to it as well.
        """
        if kind == ENTRY_KIND:
            if value is None:
                for entry in self.entries:
                    if _key(entry.event_id) == key:
                        self.entries.remove(entry)
                        self._held.discard(entry.event_id)
                        break
            elif value["event_id"] not in self._held:
                self.restore(kind, key, value)
        elif key in ("webhook", "export"):
            if value is None:
                self.settings.pop(key, None)
            else:
                self.settings[key] = value
            self._announce(key, value)

    def _append(self, entry: AuditEntry) -> AuditEntry | None:
        """Append ``entry`` to the ring; the entry it pushed out, if it was full."""
        evicted = self.entries[0] if len(self.entries) == self.entries.maxlen else None
        if evicted is not None:
            self._held.discard(evicted.event_id)
        self.entries.append(entry)
        self._held.add(entry.event_id)
        return evicted

    def clear(self):
        self.entries.clear()
        self._held.clear()
        self.settings.clear()
        self._changes = []

    def restored(self):
        """After a load: entries in order, and the settings announced to the shell."""
        # In the order they were recorded (IDs of registries sharing a database are not).
        ordered = sorted(self.entries, key=lambda entry: (entry.timestamp, entry.event_id))
        self.entries.clear()
        self.entries.extend(ordered)
        for name, value in self.settings.items():
            self._announce(name, value)

    def _configure(self, name: str, value: dict | None):
        if value is None:
            self.settings.pop(name, None)
        else:
            self.settings[name] = value
        self._changes.append((CONFIG_KIND, name, value))
        self._announce(name, value)

    def _announce(self, name, value):
        for observer in self.settings_observers:
            observer(name, value)

    # -- admin messages ------------------------------------------------------------------

    def routes(self, require_admin) -> list:
        """The admin messages, each checking the admin token first."""
        def admin(handler):
            def checked(request, peer, now):
                require_admin(request)
                return handler(request, now)
            return checked

        return [Route("get_audit_log", admin(self._get_audit_log), on_standby=True),
                Route("set_webhook", admin(self._set_webhook)),
                Route("get_webhook", admin(self._get_webhook)),
                Route("get_webhook_dlq", admin(self._get_webhook_dlq)),
                Route("set_audit_export", admin(self._set_audit_export)),
                Route("get_audit_export", admin(self._get_audit_export))]

    def _get_audit_log(self, request, now):
        limit = fields.uint(request, "limit", CAPACITY, default=DEFAULT_LIMIT) or DEFAULT_LIMIT
        network_id = fields.uint(request, "network_id", fields.MAX_U16, default=None) \
            if request.get("network_id") is not None else None
        entries = []
        for entry in reversed(self.entries):
            if network_id is None or entry.network_id == network_id:
                entries.append(entry.describe())
                if len(entries) >= limit:
                    break
        return {"type": "get_audit_log_ok", "entries": entries}

    def _set_webhook(self, request, now):
        url = fields.text(request, "url", max_length=2048)
        if not url:
            self._configure("webhook", None)
            self.record("webhook.configured", now, enabled=False)
            return {"type": "set_webhook_ok", "status": "disabled", "enabled": False, "url": ""}
        self._check_url(url)
        secret = fields.text(request, "secret", max_length=256) or new_secret()
        self._configure("webhook", {"url": url, "secret": secret})
        self.record("webhook.configured", now, enabled=True, url=url_origin(url))
        # The secret is shown once, to the admin who set it: receivers verify with it.
        return {"type": "set_webhook_ok", "status": "enabled", "enabled": True, "url": url, "secret": secret}

    def _get_webhook(self, request, now):
        configured = self.settings.get("webhook")
        stats = self.webhook_stats() if configured else {}
        return {"type": "get_webhook_ok", "status": "enabled" if configured else "disabled",
                "enabled": configured is not None, "url": configured["url"] if configured else "",
                "delivered": stats.get("sent", 0), "failed": stats.get("failed", 0),
                "dropped": stats.get("dropped", 0), "queued": stats.get("queued", 0),
                "dlq_size": stats.get("dlq_size", 0)}

    def _get_webhook_dlq(self, request, now):
        return {"type": "get_webhook_dlq_ok", "events": self.webhook_dead_letters()}

    def _set_audit_export(self, request, now):
        export_format = fields.text(request, "format", max_length=32)
        if not export_format or export_format == "disable" or request.get("enabled") is False:
            self._configure("export", None)
            self.record("audit_export.configured", now, enabled=False)
            return {"type": "set_audit_export_ok", "enabled": False}
        if export_format not in EXPORT_FORMATS:
            raise RequestError(f'audit export format must be one of {", ".join(EXPORT_FORMATS)}, '
                               f'not "{export_format}"')
        endpoint = fields.text(request, "endpoint", max_length=2048)
        settings = {"format": export_format, "endpoint": endpoint}
        if export_format == "syslog_cef":
            self._check_syslog(endpoint)
        else:
            self._check_url(endpoint)
        if export_format == "splunk_hec":
            settings["splunk_token"] = fields.text(request, "splunk_token", max_length=256)
            if not settings["splunk_token"]:
                raise RequestError("splunk_hec export needs splunk_token (the HEC token)")
            settings["index"] = fields.text(request, "index", max_length=80)
        settings["source"] = fields.text(request, "source", max_length=80) or "pilot-registry"
        if export_format == "json":
            settings["secret"] = fields.text(request, "secret", max_length=256) or new_secret()
        self._configure("export", settings)
        self.record("audit_export.configured", now, enabled=True, format=export_format, endpoint=url_origin(endpoint))
        return {"type": "set_audit_export_ok", "enabled": True, **_public(settings),
                **({"secret": settings["secret"]} if "secret" in settings else {})}

    def _get_audit_export(self, request, now):
        settings = self.settings.get("export")
        if settings is None:
            return {"type": "get_audit_export_ok", "enabled": False}
        stats = self.export_stats()
        return {"type": "get_audit_export_ok", "enabled": True, **_public(settings),
                "exported": stats.get("sent", 0), "failed": stats.get("failed", 0),
                "dropped": stats.get("dropped", 0), "queued": stats.get("queued", 0)}

    def _check_url(self, url):
        if not url:
            raise RequestError("endpoint required: an http(s) URL")
        try:
            check_url(url, allow_private=self.allow_private_targets)
        except TargetRefused as error:
            raise RequestError(error.message, hint=error.hint) from None

    def _check_syslog(self, endpoint):
        parts = urlsplit(endpoint)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in SYSLOG_SCHEMES or not parts.hostname or not port:
            raise RequestError(f'syslog endpoint must be udp://host:port or tcp://host:port, not "{endpoint}"')
        try:
            check_url(f"http://{parts.netloc}/", allow_private=self.allow_private_targets)
            address = literal_address(parts.hostname)
            if address is not None:
                check_address(address, allow_private=self.allow_private_targets)
        except TargetRefused as error:
            raise RequestError(error.message, hint=error.hint) from None


def _public(settings: dict) -> dict:
    """Settings without their secrets (shown by ``get_audit_export``)."""
    return {key: value for key, value in settings.items() if key not in ("secret", "splunk_token")}


def url_origin(url: str) -> str:
    """``scheme://host:port`` of a URL: paths and queries often carry tokens, which entries must not spread."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _key(event_id: int) -> str:
    return f"{event_id:012d}"


# -- what each request changes -------------------------------------------------------------

class _Derivation:
    """How one message type becomes audit entries: the state before, the entries after."""

    def before(self, registry, request):
        return None

    def after(self, registry, request, reply, before):
        raise NotImplementedError


class _Simple(_Derivation):
    """One entry per success: ``action`` with details read from the request or the reply."""

    def __init__(self, action, node_field="node_id", network_field=None, **detail_sources):
        self.action = action
        self.node_field = node_field
        self.network_field = network_field
        self.detail_sources = detail_sources

    def after(self, registry, request, reply, before):
        where = {}
        if self.node_field:
            where["node_id"] = _int(reply.get(self.node_field, request.get(self.node_field)))
        if self.network_field:
            where["network_id"] = _int(reply.get(self.network_field, request.get(self.network_field)))
        details = {name: reply.get(source, request.get(source)) for name, source in self.detail_sources.items()}
        return [(self.action, where, details)]


class _SetOrCleared(_Simple):
    """A setting that is either set or cleared: two actions in the reference (``key.expiry_set`` /
    ``key.expiry_cleared``)."""

    def __init__(self, action, cleared_action, cleared, **options):
        super().__init__(action, **options)
        self.cleared_action = cleared_action
        self.cleared = cleared

    def after(self, registry, request, reply, before):
        entries = super().after(registry, request, reply, before)
        if self.cleared(reply):
            return [(self.cleared_action, where, details) for _, where, details in entries]
        return entries


class _Register(_Derivation):
    def before(self, registry, request):
        key = request.get("public_key")
        return isinstance(key, str) and key in registry.directory.key_index

    def after(self, registry, request, reply, known):
        action = "node.re_registered" if known else "node.registered"
        return [(action, {"node_id": reply.get("node_id")},
                 {"address": reply.get("address"), "hostname": reply.get("hostname"),
                  "owner": request.get("owner") or None})]


class _Deregister(_Derivation):
    """``node.deregistered``, then ``network.owner_lost`` for each network the node owned (the reference's)."""

    def before(self, registry, request):
        node_id = request.get("node_id")
        return (node_id in registry.directory.nodes, _owned(registry, node_id))

    def after(self, registry, request, reply, before):
        existed, owned = before
        if not existed:
            return []
        node_id = request.get("node_id")
        return [("node.deregistered", {"node_id": node_id}, {})] + _owners_lost(registry, node_id, owned)


class _Leave(_Simple):
    """``network.left``, then ``network.owner_lost`` when the owner of a (non-enterprise) network left it."""

    def __init__(self):
        super().__init__("network.left", network_field="network_id")

    def before(self, registry, request):
        return _owned(registry, request.get("node_id"), request.get("network_id"))

    def after(self, registry, request, reply, owned):
        return super().after(registry, request, reply, owned) + \
            _owners_lost(registry, request.get("node_id"), owned)


def _owned(registry, node_id, only=None) -> list:
    """The networks ``node_id`` owns (only ``only`` when given)."""
    directory = registry.directory
    if _int(node_id) is None:
        return []
    candidates = [directory.networks.get(only)] if only is not None else \
        [directory.networks.get(n) for n in directory.networks_of(node_id)]
    return [network.id for network in candidates
            if network is not None and directory.role_of(network, node_id) == OWNER]


def _owners_lost(registry, node_id, owned) -> list:
    """A ``network.owner_lost`` entry for each of ``owned`` that ``node_id`` no longer owns."""
    directory = registry.directory
    return [("network.owner_lost", {"network_id": n}, {"former_owner": node_id}) for n in owned
            if n in directory.networks and directory.role_of(directory.networks[n], node_id) != OWNER]


class _Trust(_Derivation):
    """``report_trust`` / ``respond_handshake``: their own action, plus ``trust.created`` when a pair formed."""

    def __init__(self, action=None, **detail_sources):
        self.action = action
        self.detail_sources = detail_sources

    def before(self, registry, request):
        return _pair_exists(registry, request)

    def after(self, registry, request, reply, existed):
        node_id, peer_id = _int(request.get("node_id")), _int(request.get("peer_id"))
        entries = []
        if self.action:
            details = {name: reply.get(source, request.get(source)) for name, source in self.detail_sources.items()}
            entries.append((self.action, {"node_id": node_id}, {"peer_id": peer_id, **details}))
        if not existed and _pair_exists(registry, request):
            entries.append(("trust.created", {"node_id": node_id}, {"peer_id": peer_id}))
        return entries


class _RevokeTrust(_Derivation):
    def after(self, registry, request, reply, before):
        return [("trust.revoked", {"node_id": _int(request.get("node_id"))}, {"peer_id": _int(request.get("peer_id"))})]


class _BeaconRegister(_Derivation):
    """A beacon re-announces itself every 30 s: only a new one is an entry."""

    def before(self, registry, request):
        return request.get("beacon_id") in registry.beacons

    def after(self, registry, request, reply, known):
        return [] if known else [("beacon.registered", {}, {"beacon_id": reply.get("beacon_id"),
                                                            "addr": request.get("addr")})]


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pair_exists(registry, request):
    node_id, peer_id = _int(request.get("node_id")), _int(request.get("peer_id"))
    return node_id is not None and peer_id is not None and registry.directory.trust_pair(node_id, peer_id)


_AUDITED: dict[str, _Derivation] = {
    "register": _Register(),
    "deregister": _Deregister(),
    "rotate_key": _Simple("key.rotated", public_key="public_key"),
    "set_hostname": _Simple("hostname.changed", hostname="hostname"),
    "set_tags": _Simple("tags.changed", tags="tags"),
    "set_visibility": _Simple("visibility.changed", visibility="visibility"),
    "set_task_exec": _Simple("task_exec.changed", task_exec="task_exec"),
    "update_polo_score": _Simple("polo_score.updated", delta="delta", polo_score="polo_score"),
    "set_polo_score": _Simple("polo_score.set", polo_score="polo_score"),
    "report_trust": _Trust(),
    "revoke_trust": _RevokeTrust(),
    "request_handshake": _Simple("handshake.relayed", node_field="from_node_id", to_node_id="to_node_id"),
    "respond_handshake": _Trust("handshake.responded", accept="accept"),
    "create_network": _Simple("network.created", network_field="network_id", name="name", join_rule="join_rule"),
    "join_network": _Simple("network.joined", network_field="network_id"),
    "leave_network": _Leave(),
    "delete_network": _Simple("network.deleted", node_field=None, network_field="network_id"),
    "rename_network": _Simple("network.renamed", node_field=None, network_field="network_id", name="name"),
    "set_network_enterprise": _Simple("network.enterprise_changed", node_field=None,
                                      network_field="network_id", enterprise="enterprise"),
    "invite_to_network": _Simple("invite.created", node_field="inviter_id", network_field="network_id",
                                 target_node_id="target_node_id", status="status"),
    "respond_invite": _Simple("invite.responded", network_field="network_id", accepted="accepted"),
    "kick_member": _Simple("member.kicked", node_field="target_node_id", network_field="network_id"),
    "promote_member": _Simple("member.promoted", node_field="target_node_id", network_field="network_id",
                              role="role"),
    "demote_member": _Simple("member.demoted", node_field="target_node_id", network_field="network_id",
                             role="role"),
    "transfer_ownership": _Simple("network.ownership_transferred", node_field=None, network_field="network_id",
                                  old_owner="old_owner", new_owner="new_owner"),
    "set_network_policy": _Simple("network.policy_changed", node_field=None, network_field="network_id",
                                  max_members="max_members", allowed_ports="allowed_ports"),
    "set_expr_policy": _SetOrCleared("network.expr_policy_set", "network.expr_policy_cleared",
                                     lambda reply: reply.get("cleared"), node_field=None,
                                     network_field="network_id"),
    "set_member_tags": _Simple("member_tags.changed", node_field="target_node_id", network_field="network_id",
                               tags="tags"),
    "set_key_expiry": _SetOrCleared("key.expiry_set", "key.expiry_cleared",
                                    lambda reply: not reply.get("expires_at"), expires_at="expires_at"),
    "beacon_register": _BeaconRegister(),
}
