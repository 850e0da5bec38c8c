"""The node directory's query: tag search, filters, sort order and page, from a URL.

The same query drives the HTML page (a plain GET form, so it works without
JavaScript), its live fragment and ``/api/nodes``; :meth:`NodeQuery.link`
builds the pager's links from it.
"""

from dataclasses import dataclass, replace
from urllib.parse import urlencode

from pilotnet.errors import PilotError, INVALID_ARGUMENT

PAGE_SIZE = 25
MAX_TAG_QUERY = 64
MAX_PAGE = 1_000_000
MAX_NETWORK = 0xFFFF
# Sort key -> label, in the order the page offers them (the reference's five).
SORTS = {
    "address": "Address",
    "polo-desc": "POLO score, high to low",
    "polo-asc": "POLO score, low to high",
    "trust-desc": "Trust links, high to low",
    "status": "Status, online first",
}
_TRUE = ("1", "true", "on", "yes")


class QueryError(PilotError):
    code = INVALID_ARGUMENT


@dataclass(frozen=True, slots=True)
class NodeQuery:
    tag: str = ""
    online: bool = False
    tasks: bool = False
    sort: str = "address"
    page: int = 1
    #: Only the members of this network (0: every node).
    network: int = 0

    @classmethod
    def from_args(cls, args):
        """Parse Twisted's ``request.args`` (bytes keys and values); bad input is a QueryError."""
        def value(name):
            values = args.get(name.encode("ascii"))
            return values[-1].decode("utf-8", "replace").strip() if values else ""

        tag = value("tag").lstrip("#").lower()
        if len(tag) > MAX_TAG_QUERY:
            raise QueryError(f"tag search too long (max {MAX_TAG_QUERY} characters)")
        sort = value("sort") or "address"
        if sort not in SORTS:
            raise QueryError(f'unknown sort "{sort}" (one of {", ".join(SORTS)})')
        page = value("page") or "1"
        if not page.isdigit() or not 1 <= int(page) <= MAX_PAGE:
            raise QueryError(f'invalid page "{page}": a whole number from 1')
        network = value("network") or "0"
        if not network.isdigit() or int(network) > MAX_NETWORK:
            raise QueryError(f'invalid network "{network[:16]}": a network ID from 0 to {MAX_NETWORK}')
        return cls(tag=tag, online=value("online").lower() in _TRUE,
                   tasks=value("tasks").lower() in _TRUE, sort=sort, page=int(page), network=int(network))

    def link(self, **changes):
        """The query string of this query with ``changes`` (defaults left out)."""
        query = replace(self, **changes)
        pairs = [("tag", query.tag), ("online", "1" if query.online else ""),
                 ("tasks", "1" if query.tasks else ""),
                 ("sort", "" if query.sort == "address" else query.sort),
                 ("network", str(query.network) if query.network else ""),
                 ("page", "" if query.page == 1 else str(query.page))]
        return urlencode([(name, text) for name, text in pairs if text])

    @property
    def filtered(self):
        return bool(self.tag or self.online or self.tasks or self.network)
