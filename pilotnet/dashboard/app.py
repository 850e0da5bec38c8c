"""The dashboard's HTTP face: a Klein app over a :class:`~pilotnet.dashboard.service.Dashboard`.

Every response carries the security headers (a strict CSP: our own script and
stylesheet only, no inline code, no framing).  Node-supplied text reaches HTML
and SVG only through autoescaped templates.  ``/metrics`` answers loopback
peers only, judged by the socket's peer address; forwarding headers are never
read.  Public responses hold no IPs, keys or endpoints.
"""

import functools
import ipaddress
import json

from klein import Klein
from twisted.internet.address import UNIXAddress
from werkzeug.exceptions import HTTPException

from pilotnet import __version__
from pilotnet.dashboard import drawing
from pilotnet.dashboard.index import Indexing
from pilotnet.dashboard.query import SORTS, NodeQuery, QueryError, PAGE_SIZE
from pilotnet.dashboard.rendering import load_static, make_environment
from pilotnet.errors import INTERNAL, INVALID_ARGUMENT, NOT_FOUND
from pilotnet.registry.metrics import CONTENT_TYPE as METRICS_TYPE, metrics_text

HTML = "text/html; charset=utf-8"
JSON = "application/json"
SVG = "image/svg+xml"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Badge name -> (label, figure of /api/stats, colour, grey when zero).
BADGES = {
    "nodes": ("online nodes", "active_nodes", "#4c1", True),
    "trust": ("trust links", "total_trust_links", "#58a6ff", True),
    "requests": ("requests", "total_requests", "#a855f7", False),
    "tags": ("tags", "unique_tags", "#f59e0b", True),
    "task-executors": ("task executors", "task_executors", "#4c1", True),
}
GREY = "#9f9f9f"
# Seconds a client is asked to wait while the directory is being indexed.
RETRY_AFTER = 5


def is_loopback(request):
    """True when the socket peer is this machine (a Unix socket or a loopback IP)."""
    peer = request.getClientAddress()
    if isinstance(peer, UNIXAddress):
        return True
    try:
        return ipaddress.ip_address(getattr(peer, "host", "")).is_loopback
    except ValueError:
        return False


def _respond(content_type, cache="no-store", public=False):
    """Route decorator: security headers, content type, caching and CORS for the API."""
    def decorate(method):
        @functools.wraps(method)
        def handler(self, request, *args, **kwargs):
            for name, value in SECURITY_HEADERS.items():
                request.setHeader(name, value)
            request.setHeader("Content-Type", content_type)
            request.setHeader("Cache-Control", cache)
            if public:
                request.setHeader("Access-Control-Allow-Origin", "*")
            return method(self, request, *args, **kwargs)
        return handler
    return decorate


class DashboardApp:
    """Routes of one dashboard; ``resource()`` is what a ``Site`` serves."""

    app = Klein()

    def __init__(self, dashboard, template_directory=None):
        self.dashboard = dashboard
        self.templates = make_environment(template_directory)
        self.templates.filters["duration"] = duration
        self.static = load_static(template_directory)

    def resource(self):
        return self.app.resource()

    def _render(self, name, **context):
        return self.templates.get_template(name).render(**context).encode("utf-8")

    def _query(self, request):
        return NodeQuery.from_args(request.args)

    def _directory_context(self, query):
        index = self.dashboard.index()
        return {"query": query, "page": index.select(query), "sorts": SORTS,
                "network_name": index.network_name(query.network) if query.network else None}

    def _overview_context(self):
        self.dashboard.notice_changes()  # the charts end with the figures the cards show
        stats = self.dashboard.summary()
        history = self.dashboard.history
        peak = max(stats["versions"].values(), default=1)
        return {"stats": stats, "version_peak": peak,
                "hourly": drawing.line_chart(history.chart(history.hourly), "%H:00", history.latest),
                "daily": drawing.line_chart(history.chart(history.daily), "%a %d", history.latest)}

    # -- pages ---------------------------------------------------------------

    @app.route("/", methods=["GET", "HEAD"])
    @_respond(HTML)
    def index(self, request):
        query = self._query(request)
        return self._render("index.html", graph=drawing.trust_graph(self.dashboard.index()),
                            **self._overview_context(), **self._directory_context(query))

    @app.route("/fragment/overview", methods=["GET"])
    @_respond(HTML)
    def overview_fragment(self, request):
        return self._render("_overview.html", **self._overview_context())

    @app.route("/fragment/directory", methods=["GET"])
    @_respond(HTML)
    def directory_fragment(self, request):
        return self._render("_directory.html", **self._directory_context(self._query(request)))

    @app.route("/fragment/graph", methods=["GET"])
    @_respond(HTML)
    def graph_fragment(self, request):
        return self._render("_graph.html", graph=drawing.trust_graph(self.dashboard.index()))

    @app.route("/static/<string:name>", methods=["GET", "HEAD"])
    @_respond(HTML, cache="no-cache")
    def static_file(self, request, name):
        found = self.static.get(name)
        if found is None:
            return self._not_found(request)
        body, content_type = found
        request.setHeader("Content-Type", content_type)
        return body

    # -- API -----------------------------------------------------------------

    @app.route("/api/stats", methods=["GET"])
    @_respond(JSON, public=True)
    def stats(self, request):
        body = json.dumps(self.dashboard.summary(), separators=(",", ":"))
        if request.args.get(b"summary", [b""])[-1] in (b"1", b"true"):
            return body
        return f"{body[:-1]},{self.dashboard.index().lists_json()}}}"

    @app.route("/api/nodes", methods=["GET"])
    @_respond(JSON, public=True)
    def nodes(self, request):
        query = self._query(request)
        page = self.dashboard.index().select(query)
        return json.dumps({
            "nodes": [row.public() for row in page.rows], "total": page.total,
            "page": page.number, "pages": page.pages, "page_size": PAGE_SIZE,
            "query": {"tag": query.tag, "online": query.online, "tasks": query.tasks,
                      "sort": query.sort, "network": query.network}}, separators=(",", ":"))

    @app.route("/api/badge/<string:name>", methods=["GET"])
    @_respond(SVG, cache="no-cache, no-store, must-revalidate", public=True)
    def badge(self, request, name):
        if name not in BADGES:
            return self._not_found(request)
        label, figure, colour, grey_when_zero = BADGES[name]
        value = self.dashboard.summary()[figure]
        if grey_when_zero and not value:
            colour = GREY
        return self._render("badge.svg",
                            badge=drawing.badge(label, self.templates.filters["abbreviate"](value),
                                                colour))

    @app.route("/api/events", methods=["GET"])
    @_respond("text/event-stream")
    def events(self, request):
        return self.dashboard.live.subscribe(request)

    @app.route("/healthz", methods=["GET"])
    @_respond(JSON)
    def healthz(self, request):
        return json.dumps({"status": "ok", "version": __version__,
                           "uptime_seconds": self.dashboard.uptime(),
                           "nodes_online": self.dashboard.index().counts()["active_nodes"]})

    @app.route("/metrics", methods=["GET"])
    @_respond(METRICS_TYPE)
    def metrics(self, request):
        if not is_loopback(request):
            return self._error(request, 403, "Forbidden", "/metrics is served to this machine only.")
        return metrics_text(self.dashboard.server.metrics)

    # -- errors --------------------------------------------------------------

    @app.handle_errors(QueryError)
    @_respond(HTML)
    def bad_query(self, request, failure):
        return self._error(request, 400, "Bad request", failure.value.message)

    @app.handle_errors(Indexing)
    @_respond(HTML)
    def indexing(self, request, failure):
        request.setHeader("Retry-After", str(RETRY_AFTER))
        return self._error(request, 503, "Starting", str(failure.value), failure.value.code)

    @app.handle_errors(HTTPException)
    @_respond(HTML)
    def http_error(self, request, failure):
        error = failure.value
        return self._error(request, error.code, error.name, error.description or "")

    def _not_found(self, request):
        return self._error(request, 404, "Not found", "There is nothing at this address.")

    def _error(self, request, code, title, message, error_code=None):
        """An error as JSON under /api/ (and /metrics), as a page elsewhere."""
        request.setResponseCode(code)
        if request.path.startswith((b"/api/", b"/metrics", b"/healthz")):
            request.setHeader("Content-Type", JSON)
            return json.dumps({"error": message, "code": error_code or _code(code)})
        request.setHeader("Content-Type", HTML)
        return self._render("error.html", code=code, title=title, message=message)


def _code(status):
    if status == 404:
        return NOT_FOUND
    return INVALID_ARGUMENT if status < 500 else INTERNAL


def duration(seconds):
    """``Xd Yh Zm``, days and hours left out when zero (as the reference shows uptime)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    parts.append(f"{rest // 60}m")
    return " ".join(parts)
