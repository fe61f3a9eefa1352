"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2), so that existing Open311 clients and city
systems talk to Linli unchanged. Mounted at /open311/v2; every resource answers in XML (`.xml`) and JSON
(`.json`), errors in the standard's shape (`[{"code", "description"}]`, `<errors><error>…`).

What is public: the catalogue, and requests about public places (no resident or household attached).
A request about a person (home care, a home repair) is not listed or shown here: minimum necessary (§5.1).
Creating needs an API key (`linli open311-key issue NAME`); the reporter's e-mail and phone are not stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.domain.declaration import validate
from server.domain.errors import UserError
from server.domain.request_states import OPEN_STATES
from server.services import service_requests as sr
from server.store.couch import Couch, get_many, get_or_none
from server.web.kept_answers import KeptAnswers

Doc = dict[str, Any]
Names = tuple[dict[str, Doc], dict[str, str]]  # categories by code, departments' names by id
FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
DEFAULT_DAYS = 90
MAX_RESULTS = 1000
# A list answers this many by default (the standard's 1,000 at most with `page_size`); the next page is the same
# query with end_date just before the last one's time (a `Link: rel="next"` header says which): paging by key.
PAGE_SIZE = 100
KEY_PREFIX = "open311_key:"
# A list answered is kept until a request, category or department changes (kept_answers.py), or this long: the
# default window (the last DEFAULT_DAYS up to now) moves with the clock.
LIST_SOURCES = ("service_request:", "service_category:", "department:")
KEEP_LIST_SECONDS = 60
NAMES_KEY = "names"  # kept beside the lists: what they print of categories and departments
# A stored request's fields under the names an Open311 client sent them by, for error messages.
OPEN311_NAMES = {"reporter_name": "first_name/last_name", "address": "address_string", "category": "service_code",
                 "location": "lat/long"}


class Open311Error(Exception):
    def __init__(self, code: int, description: str) -> None:
        self.code = code
        self.description = description
        super().__init__(description)


# ---------------------------------------------------------------- rendering

def _xml_value(parent: ET.Element, name: str, value: Any) -> None:
    child = ET.SubElement(parent, name)
    if isinstance(value, list):
        item_name = {"attributes": "attribute", "values": "value", "endpoints": "endpoint",
                     "formats": "format"}.get(name, "item")
        for item in value:
            if isinstance(item, dict):
                _xml_record(child, item_name, item)
            else:  # discovery's formats: <formats><format>text/xml</format>…</formats>
                _xml_value(child, item_name, item)
    elif isinstance(value, bool):
        child.text = "true" if value else "false"
    elif value is not None:
        child.text = str(value)


def _xml_record(parent: ET.Element, name: str, record: dict[str, Any]) -> None:
    element = ET.SubElement(parent, name)
    for key, value in record.items():
        _xml_value(element, key, value)


def render(fmt: str, root: str, item: str, records: list[dict[str, Any]] | dict[str, Any],
           status: int = 200) -> Response:
    """JSON: the records as they are; XML: <root><item>…</item></root> (or <root>…</root> for one object)."""
    if fmt == "json":
        return Response(json.dumps(records, ensure_ascii=False), status_code=status, media_type=FORMATS["json"])
    element = ET.Element(root)
    if isinstance(records, dict):
        for key, value in records.items():
            _xml_value(element, key, value)
    else:
        for record in records:
            _xml_record(element, item, record)
    body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(element, encoding="utf-8", xml_declaration=False)
    return Response(body, status_code=status, media_type=FORMATS["xml"])


def error_response(fmt: str, code: int, description: str) -> Response:
    return render(fmt if fmt in FORMATS else "xml", "errors", "error", [{"code": code, "description": description}],
                  status=code)


# ---------------------------------------------------------------- mapping Linli to Open311

def service_json(category: Doc) -> dict[str, Any]:
    return {"service_code": category["code"], "service_name": category["name"],
            "description": category.get("description") or category.get("name_en", ""),
            "metadata": bool(category.get("attributes")), "type": "realtime",
            "keywords": ", ".join(category.get("keywords", [])), "group": category.get("group", "")}


def definition_json(category: Doc) -> dict[str, Any]:
    return {"service_code": category["code"], "attributes": [
        {"variable": True, "code": a["code"], "datatype": a["datatype"], "required": a["required"],
         "datatype_description": None, "order": a["order"], "description": a["description"],
         "values": [{"key": v, "name": v} for v in a.get("values", [])]}
        for a in sorted(category.get("attributes", []), key=lambda a: a["order"])]}


def listed(doc: Doc) -> dict[str, Any]:
    """What a list prints of a request, as `linli/public_requests` gives it in each row (server/store/views.py:
    the same fields, the same way), so that a list reads no document."""
    # Staff's notes on the matter; a resident's rating and its comment are theirs, not a status note.
    notes = [h.get("note", "") for h in doc["history"] if h["action"] in ("comment", "resolved")]
    location = doc.get("location") or {}
    return {"status": "open" if doc["status"] in OPEN_STATES else "closed", "note": notes[-1] if notes else None,
            "category": doc["category"], "description": doc["description"], "department": doc.get("department"),
            "created_at": doc["created_at"], "updated_at": doc.get("updated_at", doc["created_at"]),
            "due_close": doc.get("due_close"), "address": doc.get("address") or None, "lat": location.get("lat"),
            "lon": location.get("lon"), "media_url": doc.get("media_url") or None}


def request_json(request_id: str, fields: Doc, category: Doc | None, departments: dict[str, str]) -> dict[str, Any]:
    """A request in GeoReport's words, from what `listed` makes of it."""
    return {
        "service_request_id": request_id.split(":", 1)[1],
        "status": fields["status"],
        "status_notes": fields.get("note"),
        "service_name": category["name"] if category else fields["category"],
        "service_code": fields["category"],
        "description": fields["description"],
        "agency_responsible": departments.get(fields.get("department") or ""),
        "service_notice": None,
        "requested_datetime": fields["created_at"],
        "updated_datetime": fields.get("updated_at"),
        "expected_datetime": fields.get("due_close"),
        "address": fields.get("address"),
        "address_id": None,
        "zipcode": None,
        "lat": fields.get("lat"),
        "long": fields.get("lon"),
        "media_url": fields.get("media_url"),
    }


def is_public(doc: Doc) -> bool:
    return not (doc.get("resident") or doc.get("household"))


# ---------------------------------------------------------------- API keys

def issue_key(couch: Couch, name: str, street: str, now: dt.datetime) -> str:
    """A new API key for an Open311 client; only its hash is stored. Returns the key (shown once)."""
    key = secrets.token_urlsafe(24)
    doc = {"_id": key_id(key), "type": "open311_key", "street": street, "name": name,
           "created_at": now.isoformat(), "revoked": False}
    validate(doc)
    couch.accounts.save(doc)
    return key


def key_id(key: str) -> str:
    return KEY_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def check_key(couch: Couch, key: str) -> Doc:
    doc = get_or_none(couch.accounts, key_id(key)) if key else None
    if doc is None or doc.get("revoked"):
        raise Open311Error(403, "api_key is missing or not valid")
    return doc


# ---------------------------------------------------------------- the resources

def the_street(couch: Couch) -> str | None:
    """The street this server serves (its Open311 jurisdiction): the one street document."""
    rows = couch.main.all(startkey="street:", endkey="street:\ufff0", include_docs="false", limit=1, as_list=True)
    return rows[0]["id"] if rows else None


def routes(couch: Couch, now: Callable[[], dt.datetime]) -> list[Route]:
    """The GeoReport v2 resources, to mount at /open311/v2."""
    street = ""
    kept: KeptAnswers[Any] = KeptAnswers(couch.main, LIST_SOURCES, KEEP_LIST_SECONDS)

    def endpoint(handler: Callable[[Request, str], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            nonlocal street
            fmt = request.path_params.get("format", "")
            try:
                if fmt not in FORMATS:
                    raise Open311Error(400, "format must be xml or json")
                street = street or await run_in_threadpool(the_street, couch) or ""
                if not street:
                    raise Open311Error(404, "this server has no street configured yet")
                jurisdiction = street.split(":", 1)[1]
                given = request.query_params.get("jurisdiction_id")
                if given not in (None, "", jurisdiction):
                    raise Open311Error(404, f"jurisdiction_id {given!r} not found; this server serves {jurisdiction}")
                return await handler(request, fmt)
            except Open311Error as error:
                return error_response(fmt, error.code, error.description)
            except UserError as error:  # RequestError, or the declaration refusing the document (e.g. too long)
                return error_response(fmt, error.status, "; ".join(
                    f"{OPEN311_NAMES.get(e.field, e.field)}: {e.text()}" for e in error.errors))
        return wrapped

    async def discovery(request: Request, fmt: str) -> Response:
        base = str(request.base_url).rstrip("/") + "/open311/v2/"
        return render(fmt, "discovery", "", {
            "changeset": "2026-11-25T00:00:00Z", "contact": "community office", "key_service": "linli open311-key",
            "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2", "url": base,
                           "changeset": "2026-11-25T00:00:00Z", "type": "production",
                           "formats": list(FORMATS.values())}]})

    async def services(request: Request, fmt: str) -> Response:
        categories = await run_in_threadpool(sr.catalogue, couch, street)
        return render(fmt, "services", "service", [service_json(c) for c in categories.values()])

    async def service_definition(request: Request, fmt: str) -> Response:
        category = (await run_in_threadpool(sr.catalogue, couch, street)).get(request.path_params["code"])
        if category is None:
            raise Open311Error(404, f"service_code {request.path_params['code']!r} not found")
        return render(fmt, "service_definition", "", definition_json(category))

    async def create(request: Request, fmt: str) -> Response:
        form = await request.form()
        fields = {k: str(v) for k, v in form.items()}
        key = await run_in_threadpool(check_key, couch, fields.get("api_key", ""))
        new = sr.NewRequest(street=street, category=fields.get("service_code", ""),
                            description=fields.get("description", ""), location=_location(fields),
                            address=fields.get("address_string", ""), attributes=_attributes(form),
                            reporter_name=" ".join(filter(None, (fields.get("first_name"), fields.get("last_name")))),
                            account_id=fields.get("account_id", ""), media_url=_media_url(fields), source="open311")
        if not new.category:
            raise Open311Error(400, "service_code is required")
        reporter = "user:open311." + key["_id"][len(KEY_PREFIX):][:12]
        doc = await run_in_threadpool(sr.create, couch, reporter, new, now())
        return render(fmt, "service_requests", "request", [{
            "service_request_id": doc["_id"].split(":", 1)[1], "service_notice": None,
            "account_id": doc.get("account_id")}])

    async def list_requests(request: Request, fmt: str) -> Response:
        key = (fmt, tuple(sorted(request.query_params.multi_items())))
        generation = await run_in_threadpool(kept.generation)
        at = now()
        if (answer := kept.get(key, at.timestamp())) is None:
            made = await made_list(request, fmt, at, await kept_names(generation, at))
            answer = (made.body, made.headers.get("Link"))
            kept.put(key, generation, at.timestamp(), answer, size=len(made.body))
        body, link = answer
        return Response(body, media_type=FORMATS[fmt], headers={"Link": link} if link else None)

    async def made_list(request: Request, fmt: str, at: dt.datetime, names: Names) -> Response:
        q = request.query_params
        ids = _csv(q.get("service_request_id"))
        if ids:  # "overrides all other parameters"
            found = await run_in_threadpool(get_many, couch.main, ["service_request:" + i for i in ids])
            docs = sorted(((i, listed(d)) for i, d in found.items() if d.get("type") == "service_request"
                           and is_public(d)), key=lambda r: r[1]["created_at"], reverse=True)
        else:
            start, end = _date_range(q, at)
            codes, statuses = _csv(q.get("service_code")), _csv(q.get("status"))
            if statuses - {"open", "closed"}:
                raise Open311Error(400, "status must be open and/or closed")
            size = _page_size(q)
            docs = await run_in_threadpool(_newest_public, couch, street, start, end, codes, statuses, size)
            if len(docs) == size:
                before = dt.datetime.fromisoformat(docs[-1][1]["created_at"]) - dt.timedelta(microseconds=1)
                answer = render(fmt, "service_requests", "request", _as_json(docs, names))
                after = {**q, "end_date": before.astimezone(dt.UTC).isoformat(), "start_date": start.isoformat()}
                answer.headers["Link"] = f'<{request.url.path}?{urlencode(after)}>; rel="next"'
                return answer
        return render(fmt, "service_requests", "request", _as_json(docs, names))

    async def get_request(request: Request, fmt: str) -> Response:
        generation = await run_in_threadpool(kept.generation)
        doc = await run_in_threadpool(get_or_none, couch.main, "service_request:" + request.path_params["id"])
        if doc is None or doc.get("type") != "service_request" or not is_public(doc):
            raise Open311Error(404, f"service_request_id {request.path_params['id']!r} not found")
        names = await kept_names(generation, now())
        return render(fmt, "service_requests", "request", _as_json([(doc["_id"], listed(doc))], names))

    async def token(request: Request, fmt: str) -> Response:
        # Linli answers a create with the request id at once, so there are no tokens to look up.
        raise Open311Error(404, f"token {request.path_params['token']!r} not found (this server returns "
                           "service_request_id directly when a request is created)")

    async def kept_names(generation: int, at: dt.datetime) -> Names:
        """The street's categories and departments, kept with the lists (the same changes drop them)."""
        if (names := kept.get(NAMES_KEY, at.timestamp())) is None:
            names = await run_in_threadpool(_names, couch, street)
            kept.put(NAMES_KEY, generation, at.timestamp(), names)
        return names

    fmt = "{format:str}"
    return [
        Route(f"/discovery.{fmt}", endpoint(discovery)),
        Route(f"/services.{fmt}", endpoint(services)),
        Route(f"/services/{{code:str}}.{fmt}", endpoint(service_definition)),
        Route(f"/requests.{fmt}", endpoint(create), methods=["POST"]),
        Route(f"/requests.{fmt}", endpoint(list_requests), methods=["GET"]),
        Route(f"/requests/{{id:str}}.{fmt}", endpoint(get_request)),
        Route(f"/tokens/{{token:str}}.{fmt}", endpoint(token)),
    ]


def _csv(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


def _date(query: Any, name: str) -> dt.datetime | None:
    """The parameter in UTC; years 1 and 9999 at the edge of a time zone cannot be, so they are refused."""
    value = query.get(name)
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} must be a W3C date and time, e.g. 2026-11-25T08:00:00Z") from None
    if parsed.tzinfo is None:
        raise Open311Error(400, f"{name} must include a time zone (Z or ±hh:mm)")
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise Open311Error(400, f"{name} is out of range (years 1 to 9999 in UTC)") from None


def _date_range(query: Any, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start_date, end_date], by default the DEFAULT_DAYS up to now (or up to end_date)."""
    end = _date(query, "end_date") or now
    start = _date(query, "start_date")
    if start is None:
        try:
            start = end - dt.timedelta(days=DEFAULT_DAYS)
        except OverflowError:  # an end_date in year 1
            start = dt.datetime.min.replace(tzinfo=dt.UTC)
    if start > end:
        raise Open311Error(400, "start_date must not be after end_date")
    return start, end


def _location(fields: dict[str, str]) -> dict[str, float] | None:
    lat, lon = fields.get("lat"), fields.get("long")
    if not lat and not lon:
        return None
    try:
        location = {"lat": float(lat or ""), "lon": float(lon or "")}
    except ValueError:
        raise Open311Error(400, "lat and long must both be decimal degrees (WGS84)") from None
    if not (-90 <= location["lat"] <= 90 and -180 <= location["lon"] <= 180):
        raise Open311Error(400, "lat and long are out of range")
    return location


def _attributes(form: Any) -> dict[str, Any]:
    """attribute[code]=value; repeated (or attribute[code][]) for multi-value lists."""
    answers: dict[str, Any] = {}
    for name in form:
        if name.startswith("attribute[") and name.endswith("]"):
            code = name[len("attribute["):-1].removesuffix("][")
            values = [str(v) for v in form.getlist(name)]
            answers[code] = values if len(values) > 1 or name.endswith("[]") else values[0]
    return answers


def _media_url(fields: dict[str, str]) -> str:
    url = fields.get("media_url", "")
    if url and not url.startswith(("http://", "https://")):
        raise Open311Error(400, "media_url must be an http(s) URL")
    return url[:500]


def _page_size(query: Any) -> int:
    text = query.get("page_size") or str(PAGE_SIZE)
    if not text.isdigit() or not 1 <= int(text) <= MAX_RESULTS:
        raise Open311Error(400, f"page_size must be a whole number from 1 to {MAX_RESULTS}")
    return int(text)


def _names(couch: Couch, street: str) -> Names:
    """The street's categories by code (retired ones too: an old request names one) and the departments' names by
    id (a server serves one street)."""
    return sr.catalogue(couch, street, active_only=False), sr.department_names(couch)


def _as_json(requests: list[tuple[str, Doc]], names: Names) -> list[dict[str, Any]]:
    categories, departments = names
    return [request_json(i, r, categories.get(r["category"]), departments) for i, r in requests]


def _newest_public(couch: Couch, street: str, start: dt.datetime, end: dt.datetime, codes: set[str],
                   statuses: set[str], limit: int = MAX_RESULTS) -> list[tuple[str, Doc]]:
    """Up to `limit` public requests made in [start, end] of these codes and states, newest first, each as its id
    and what `listed` makes of it: one key range of `public_requests` per code × state asked for (both states when
    none is), read without the documents."""
    found: dict[str, Doc] = {}
    for code in sorted(codes) or [""]:
        for status in sorted(statuses) or ["closed", "open"]:
            rows = couch.main.query("linli/public_requests", descending="true", limit=limit, as_list=True,
                                    startkey=[street, code, status, end.astimezone(dt.UTC).isoformat()],
                                    endkey=[street, code, status, start.astimezone(dt.UTC).isoformat()])
            found.update((r["id"], r["value"]) for r in rows)
    return sorted(found.items(), key=lambda r: r[1]["created_at"], reverse=True)[:limit]



