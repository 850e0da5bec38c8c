"""Audit export: each audit entry to the operator's log system, in one of three formats.

* ``json``: the entry's document POSTed to an http(s) URL, signed like a
  webhook (``X-Pilot-Signature``, docs/webhooks.md);
* ``splunk_hec``: a Splunk HTTP Event Collector event
  (``{"time", "host", "source", "sourcetype", "index"?, "event"}``) POSTed
  with ``Authorization: Splunk <token>``;
* ``syslog_cef``: an ArcSight CEF line inside an RFC 5424 syslog message,
  over UDP or TCP (``udp://host:port``, ``tcp://host:port``).

Every format is delivered by a :class:`~pilotnet.webhooks.queue.DeliveryQueue`
(queue of 1024, retries, dead letters), with a 10 s timeout as the reference.
"""

import socket
from urllib.parse import urlsplit

from pilotnet import __version__
from pilotnet.registry.audit import AuditEntry
from pilotnet.webhooks.http import HttpSender
from pilotnet.webhooks.queue import DeliveryQueue
from pilotnet.webhooks.signing import signed_headers
from pilotnet.webhooks.syslog import SyslogSender, rfc5424
from pilotnet.webhooks.targets import check_url
from pilotnet.webhooks.webhook import json_body

#: What delivers one export payload: by syslog (CEF) or HTTP (Splunk HEC, signed JSON).
Sender = SyslogSender | HttpSender

TIMEOUT = 10.0
VENDOR = "Pilot Protocol"
PRODUCT = "pilot-registry"
SOURCETYPE = "pilot:audit"
#: CEF severity (0-10) by the action's family; everything else is 3.
SEVERITY = {"trust": 5, "key": 6, "network": 4, "node": 3, "audit_export": 7, "webhook": 7,
            "handshake": 3}


def _cef_header(value: str) -> str:
    """CEF header fields escape ``\\`` and ``|`` and hold no line breaks (they become spaces)."""
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_value(value) -> str:
    """CEF extension values escape ``\\``, ``=`` and line breaks."""
    text = str(value)
    return (text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n"))


def cef(entry: AuditEntry) -> str:
    """``CEF:0|Pilot Protocol|pilot-registry|<version>|<action>|<action>|<severity>|<extension>``."""
    severity = SEVERITY.get(entry.action.split(".", 1)[0], 3)
    extension = [f"rt={int(entry.timestamp * 1000)}", f"act={_cef_value(entry.action)}",
                 f"externalId={entry.event_id}"]
    if entry.node_id is not None:
        extension += ["cn1Label=node_id", f"cn1={entry.node_id}"]
    if entry.network_id is not None:
        extension += ["cn2Label=network_id", f"cn2={entry.network_id}"]
    if entry.details:
        details = ", ".join(f"{key}={value}" for key, value in entry.details.items())
        extension.append(f"msg={_cef_value(details)}")
    header = "|".join(_cef_header(part) for part in (VENDOR, PRODUCT, __version__, entry.action, entry.action))
    return f"CEF:0|{header}|{severity}|{' '.join(extension)}"


def hec_event(entry: AuditEntry, *, host: str, source: str, index: str = "") -> dict:
    event = {"time": entry.timestamp, "host": host, "source": source, "sourcetype": SOURCETYPE,
             "event": entry.document()}
    if index:
        event["index"] = index
    return event


def make_exporter(reactor, settings: dict, *, allow_private: bool = False, host: str | None = None,
                  resolver=None, delivery_options=None) -> tuple[DeliveryQueue, Sender]:
    """The queue delivering to the export ``settings`` (as ``set_audit_export`` stored them), and its sender.

    The queue takes :meth:`AuditEntry.stored` dictionaries."""
    host = host or socket.gethostname()
    export_format = settings["format"]
    options = {} if resolver is None else {"resolver": resolver}
    if export_format == "syslog_cef":
        parts = urlsplit(settings["endpoint"])

        def line(payload: dict) -> bytes:
            entry = AuditEntry(**payload)
            return rfc5424(cef(entry), timestamp=entry.timestamp, hostname=host, app_name=settings["source"],
                           msgid="audit")

        sender: Sender = SyslogSender(reactor, parts.hostname, parts.port, parts.scheme, line,
                              allow_private=allow_private, timeout=TIMEOUT, **options)
    else:
        target = check_url(settings["endpoint"], allow_private=allow_private)
        if export_format == "splunk_hec":
            def encode(payload: dict):
                entry = AuditEntry(**payload)
                body = json_body(hec_event(entry, host=host, source=settings["source"], index=settings.get("index", "")))
                return body, {"Authorization": f"Splunk {settings['splunk_token']}"}
        else:
            def encode(payload: dict):
                body = json_body(AuditEntry(**payload).document())
                return body, signed_headers(settings["secret"], int(reactor.seconds()), body)

        sender = HttpSender(reactor, target, encode, allow_private=allow_private, timeout=TIMEOUT, **options)
    queue = DeliveryQueue(reactor, sender, name=f"audit export ({export_format})", **(delivery_options or {}))
    return queue, sender

