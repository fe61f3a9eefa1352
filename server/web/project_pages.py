"""Service projects and their evaluations (issue 18 item 6), online (server/services/projects.py).

- /projects: the community's projects (everyone who works there); the secretary adds one (/projects/new).
- /projects/{key}: its targets, budget and evaluations; the secretary records a half-year's evaluation (scores,
  evaluator, the report as a PDF). A project two evaluations in a row failed shows its withdrawal vote.
- /projects/{key}/reports/{period}: the evaluation's report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.domain.access import Principal
from server.domain.declaration import PROJECT_KINDS, Role
from server.domain.errors import by_field
from server.domain.http_headers import attachment_answer
from server.security.firewall import Firewall
from server.services import projects
from server.store import queries
from server.store.couch import get_many, get_or_none
from server.web.lookup import visible_doc

Doc = dict[str, Any]
CurrentUser = Callable[[Request], Awaitable[Doc]]
PROJECT_FIELDS = ("community", "name", "kind", "provider", "targets", "budget", "starts_on")
EVALUATION_FIELDS = ("period", "scores", "evaluator")


def routes(firewall: Firewall, current_user: CurrentUser, render: Callable[..., Response],
           now: Callable[[], dt.datetime]) -> list[Route]:
    couch = firewall.couch

    async def principal(request: Request) -> Principal:
        return Principal.of(await current_user(request))

    async def list_page(request: Request) -> Response:
        p = await principal(request)
        found = await run_in_threadpool(projects.projects_of, couch, sorted(p.communities))
        names = await run_in_threadpool(get_many, couch.main, sorted(p.communities))
        return render(request, "projects.html", projects=found, secretary=p.has(Role.SECRETARY),
                      names={i: d["name"] for i, d in names.items()})

    async def new_page(request: Request) -> Response:
        p = await principal(request)
        if not p.has(Role.SECRETARY):
            raise HTTPException(403)
        values = dict.fromkeys(PROJECT_FIELDS, "")
        values["community"] = sorted(p.communities)[0] if p.communities else ""
        errors: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            values = {k: str(form.get(k, "")) for k in PROJECT_FIELDS}
            try:
                doc = await run_in_threadpool(projects.create, couch, p, projects.NewProject(**values), now())
            except projects.ProjectError as bad:
                if bad.status == 403:
                    raise HTTPException(403) from None
                errors = by_field(bad.errors)
            else:
                return RedirectResponse(f"/projects/{doc['_id'].split(':', 1)[1]}", status_code=303)
        names = await run_in_threadpool(get_many, couch.main, sorted(p.communities))
        return render(request, "project_new.html", 400 if errors else 200, values=values, errors=errors,
                      kinds=PROJECT_KINDS, communities=[(i, d["name"]) for i, d in sorted(names.items())])

    async def detail(request: Request) -> Response:
        p = await principal(request)
        project = await run_in_threadpool(visible_doc, couch, p, f"service_project:{request.path_params['key']}",
                                          "service_project")
        values = dict.fromkeys(EVALUATION_FIELDS, "")
        errors: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            values = {k: str(form.get(k, "")) for k in EVALUATION_FIELDS}
            report = form.get("report")
            data = await report.read() if isinstance(report, UploadFile) else b""
            try:
                await run_in_threadpool(projects.evaluate, couch, firewall.keystore, p, project,
                                        projects.NewEvaluation(values["period"], values["scores"],
                                                               values["evaluator"], data), now())
            except projects.ProjectError as bad:
                if bad.status == 403:
                    raise HTTPException(403) from None
                errors = by_field(bad.errors)
            else:
                return RedirectResponse(request.url.path, status_code=303)
        evaluations = await run_in_threadpool(projects.evaluations_of, couch, project)
        matter = (await run_in_threadpool(queries.load_doc, couch, project["withdrawal_matter"], "matter")
                  if project.get("withdrawal_matter") else None)
        return render(request, "project.html", 400 if errors else 200, project=project, evaluations=evaluations,
                      matter=matter, values=values, errors=errors, pass_mark=projects.PASS_MARK,
                      secretary=p.has(Role.SECRETARY) and project["community"] in p.communities)

    async def report(request: Request) -> Response:
        p = await principal(request)
        project = await run_in_threadpool(visible_doc, couch, p, f"service_project:{request.path_params['key']}",
                                          "service_project")
        evaluation = await run_in_threadpool(get_or_none, couch.main,
                                             projects.evaluation_id(project, request.path_params["period"]))
        if evaluation is None or "report.pdf" not in evaluation.get("_attachments", {}):
            raise HTTPException(404)
        response, _ = await run_in_threadpool(couch.main.resource.get, f"{evaluation['_id']}/report.pdf", stream=True)
        media_type, headers = attachment_answer(response.content)
        return Response(response.content, media_type=media_type, headers=headers)

    return [
        Route("/projects", list_page),
        Route("/projects/new", new_page, methods=["GET", "POST"]),
        Route("/projects/{key}", detail, methods=["GET", "POST"]),
        Route("/projects/{key}/reports/{period}", report),
    ]
