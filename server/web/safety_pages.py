"""Elderly safety on screen (issue 14, item 6), online pages:

- /residents/{id}/safety: the resident's care level and plan, devices with battery and last heard, the status line
  (last water use, last activity, last heart rate: the value only for someone entitled to health data, filed),
  family contacts (under Contact on the household page, opened and filed like every protected field) and the
  alert history; the grid worker and the secretary change the care level and plan here (POST .../care).
- /devices: the secretary (or the administrator) pairs a wristband or meter with a resident and un-pairs it,
  with `server/services/devices.py`'s `register` and `unregister`, the functions `linli device register | remove`
  run: a device paired here is exactly the document the command line makes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from pycouchdb.exceptions import Conflict
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import Principal
from server.domain.declaration import DEVICE_KINDS, ELDERLY_CARE_LEVELS, Role, ValidationError, validate
from server.domain.errors import FieldError, by_field
from server.security.firewall import CiphertextRefused, Firewall
from server.security.keystore import ShreddedError
from server.services import devices, safety
from server.store import queries
from server.store.couch import get_or_none, iter_view_docs
from server.web.lookup import visible_doc

Doc = dict[str, Any]
Render = Callable[..., Response]
CurrentUser = Callable[[Request], Awaitable[Doc]]
Device = Callable[[Request], str]
CARE_TEXT = ("care_plan", "care_plan_health")


def _care_values(form: FormData) -> Doc:
    return {"elderly_care_level": str(form.get("elderly_care_level", "")) or None,
            **{name: str(form.get(name, "")).strip() for name in CARE_TEXT}, "_rev": str(form.get("_rev", ""))}


def _with_care(resident: Doc, values: Doc) -> Doc:
    """The resident with the form's care level and plan (an empty plan: none); a level not given and an empty health
    part keep what is stored (the health part is sealed: the form never shows it)."""
    doc = {k: v for k, v in resident.items() if k != "care_plan"}
    if values["elderly_care_level"]:
        doc["elderly_care_level"] = values["elderly_care_level"]
    if values["care_plan"]:
        doc["care_plan"] = values["care_plan"]
    if values["care_plan_health"]:
        doc["care_plan_health"] = values["care_plan_health"]
    return doc


def _staff_of(p: Principal, community: str) -> bool:
    return p.has(Role.ADMIN) or (p.has(Role.SECRETARY) and community in p.communities)


def routes(firewall: Firewall, current_user: CurrentUser, render: Render, now: Callable[[], dt.datetime],
           device_of: Device) -> list[Route]:
    couch = firewall.couch

    async def safety_page(request: Request, status: int = 200, **shown: Any) -> Response:
        p = Principal.of(await current_user(request))
        resident = await run_in_threadpool(visible_doc, couch, p, request.path_params["resident_id"], "resident")
        facts = await run_in_threadpool(lambda: safety.resident_safety(firewall, p, resident,
                                                                       device=device_of(request), now=now()))
        may_edit = await run_in_threadpool(queries.refusal_to_store, couch, p, resident, resident, now()) is None
        privacy = await run_in_threadpool(firewall.privacy_of, resident["_id"])
        return render(request, "resident_safety.html", status, resident=resident, safety=facts, may_edit=may_edit,
                      may_pair=_staff_of(p, resident["community"]), care_levels=list(ELDERLY_CARE_LEVELS),
                      sos_family=privacy["sos_family"],
                      values=shown.pop("values", {"elderly_care_level": resident.get("elderly_care_level", "none"),
                                                  "care_plan": resident.get("care_plan", ""), "care_plan_health": "",
                                                  "_rev": resident["_rev"]}),
                      errors=shown.pop("errors", {}), saved=request.query_params.get("saved") == "1", **shown)

    async def care(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        resident = await run_in_threadpool(visible_doc, couch, p, request.path_params["resident_id"], "resident")
        values = _care_values(await request.form())
        doc = _with_care(resident, values)
        try:
            validate(doc)
        except ValidationError as invalid:
            return await safety_page(request, 400, values=values, errors=by_field(invalid.errors))
        if await run_in_threadpool(queries.refusal_to_store, couch, p, resident, doc, now()):
            raise HTTPException(403)  # seen, not theirs to change (the resident themselves, a department)
        if values["_rev"] != resident["_rev"]:
            return await safety_page(request, 409, values=values, message="care_changed_meanwhile")
        try:
            sealed = await run_in_threadpool(firewall.seal_for_storage, [doc])
            await run_in_threadpool(couch.main.save, sealed[-1])
        except Conflict:
            return await safety_page(request, 409, values=values, message="care_changed_meanwhile")
        except (ShreddedError, CiphertextRefused):
            return await safety_page(request, 409, values=values, message="fw_erased")
        return RedirectResponse(f"/residents/{resident['_id']}/safety?saved=1", status_code=303)

    async def devices_page(request: Request) -> Response:
        p = Principal.of(await current_user(request))
        if not p.has(Role.SECRETARY, Role.ADMIN):
            raise HTTPException(403)
        values: Doc = {"resident": request.query_params.get("resident", "")[:100], "kind": "wristband", "mac": "",
                       "gateway": "", "model": "", "encrypted": True}
        errors: dict[str, Any] = {}
        done, status = None, 200
        if request.method == "POST":
            form = await request.form()
            if form.get("action") == "unpair":
                done, status, errors = await run_in_threadpool(_unpair, p, str(form.get("device", "")))
            else:
                values = {**{k: str(form.get(k, "")).strip() for k in ("resident", "kind", "mac", "gateway", "model")},
                          "encrypted": form.get("encrypted") == "on"}
                done, status, errors = await run_in_threadpool(_pair, p, values)
        resident = await run_in_threadpool(_resident_for, p, values["resident"])
        communities = [resident["community"]] if resident else sorted(p.communities)
        gateways = [g for c in communities for g in iter_view_docs(couch.main, "linli/by_place", [c, "gateway"])]
        paired = ([d for d in iter_view_docs(couch.main, "linli/by_place", [resident["household"], "device"])
                   if d.get("resident") == resident["_id"]] if resident else [])
        return render(request, "devices.html", status, values=values, errors=errors, done=done, resident=resident,
                      gateways=gateways, paired=paired, kinds=list(DEVICE_KINDS))

    def _resident_for(p: Principal, resident_id: str) -> Doc | None:
        doc = queries.load_doc(couch, resident_id, "resident") if resident_id.startswith("resident:") else None
        return doc if doc is not None and _staff_of(p, doc["community"]) else None

    def _pair(p: Principal, values: Doc) -> tuple[Doc | None, int, dict[str, Any]]:
        resident = _resident_for(p, values["resident"])
        if resident is None:  # not one of theirs, or none at all: the same answer
            return None, 400, by_field([FieldError("resident", "err_no_such_resident", {})])
        try:
            doc = devices.register(firewall, resident=resident["_id"], gateway=values["gateway"], kind=values["kind"],
                                   mac=values["mac"], encrypted=values["encrypted"], model=values["model"] or None,
                                   now=now())
        except ValidationError as invalid:
            return None, 400, by_field(invalid.errors)
        except devices.RegistrationError as refused:
            field = {"err_pair_no_gateway": "gateway", "err_pair_other_community": "gateway",
                     "err_pair_kind": "kind"}.get(refused.key, "mac")
            return None, 400, by_field([FieldError(field, refused.key, refused.params)])
        except ShreddedError:
            return None, 400, by_field([FieldError("resident", "fw_erased")])
        return {"paired": doc["mac"]}, 200, {}

    def _unpair(p: Principal, device_id: str) -> tuple[Doc | None, int, dict[str, Any]]:
        doc = get_or_none(couch.main, device_id) if device_id.startswith("device:") else None
        if doc is None or doc.get("type") != "device" or not _staff_of(p, doc.get("community", "")):
            raise HTTPException(404)
        devices.unregister(couch, doc["_id"])
        return {"unpaired": doc["mac"]}, 200, {}

    return [Route("/residents/{resident_id}/safety", safety_page),
            Route("/residents/{resident_id}/care", care, methods=["POST"]),
            Route("/devices", devices_page, methods=["GET", "POST"])]
