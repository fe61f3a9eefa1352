"""Which live clients could see a document, found without asking each of them.

The live follower (`hub.py`) used to ask `may_see` of every connected client
for every change. Now each client is filed under the names its principal
answers to (user id, resident, gateway, department, communities, grids; the
whole street for an administrator), and a document is offered only to the
clients filed under a name it carries in a routing field
(`access.VISIBILITY_FIELDS`, or its own id), or to the whole street for the
types everyone there sees (`access.STREET_WIDE_TYPES`). Every rule in
`access.RULES` grants a document through one of those names; a test checks
that no client who may see a document is left out. `may_see` still decides
for each candidate: the index only narrows whom to ask, it never grants.
"""

from __future__ import annotations

from server.domain.access import STREET_WIDE_TYPES, VISIBILITY_FIELDS, Doc, Principal
from server.domain.declaration import Role

# Routing fields that hold names; type, street and visibility qualify a document but name nobody.
_NAMING_FIELDS = tuple(f for f in VISIBILITY_FIELDS if f not in ("type", "street", "visibility"))


def principal_keys(p: Principal) -> frozenset[str]:
    """Where a client with this principal is filed."""
    names = {p.user_id, p.resident, p.gateway, p.department, *p.communities, *p.grids}
    keys = {"name:" + n for n in names if n} | {"street:" + p.street}
    if p.has(Role.ADMIN):
        keys.add("admin:" + p.street)
    return frozenset(keys)


def document_keys(doc: Doc) -> set[str]:
    """Where the clients that could see this document are filed."""
    street = doc.get("street")
    if not isinstance(street, str):
        return set()  # may_see refuses a document without a street
    keys = {"admin:" + street, "name:" + doc["_id"]}
    for field in _NAMING_FIELDS:
        value = doc.get(field)
        for name in value if isinstance(value, list) else [value]:
            if isinstance(name, str):
                keys.add("name:" + name)
    if doc.get("type") in STREET_WIDE_TYPES:
        keys.add("street:" + street)
    return keys
