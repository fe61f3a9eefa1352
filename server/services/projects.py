"""Service projects and their half-yearly evaluation (issue 18 item 6; plan §4.5: a third party evaluates every
half year; a project that fails two evaluations in a row is withdrawn).

The secretary records a project (a home-care contract, a canteen for the elderly: provider, targets, budget) and
each half-year's evaluation (the evaluator's scores and report, a PDF). An evaluation passes at PASS_MARK. When a
project's evaluation fails and so did the one before it, the project becomes "withdrawal_proposed": it is on the
secretary's /today (server/services/today.py) and a committee vote on withdrawing it is opened in the deliberation
module (server/services/deliberation.py), linked from the project. Once that vote's result is published
(`settle_withdrawal`, called as it is published and swept each minute) the project is "withdrawn" if it passed and
"active" again if it failed, the result linked either way.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pycouchdb.exceptions import Conflict

from server.domain.access import Principal
from server.domain.declaration import PROJECT_KINDS, Role, validate
from server.domain.errors import FieldError, UserError
from server.security.keystore import KeyStore
from server.services import deliberation
from server.store import queries
from server.store.couch import Couch, docs_of_type, get_or_none, iter_view_docs

Doc = dict[str, Any]
PASS_MARK = 60  # of 100
MAX_BUDGET = 100_000_000  # yuan a year
MAX_REPORT_BYTES = 5 * 1024 * 1024
MAX_CRITERIA = 20
WITHDRAWAL_VOTE = dt.timedelta(days=14)  # how long the committee has to vote on a withdrawal
_PERIOD = re.compile(r"^(?P<year>20\d\d)-H(?P<half>[12])$")


class ProjectError(UserError):
    def __init__(self, field: str, key: str, status: int = 400, **params: str | int) -> None:
        super().__init__([FieldError(field, key, params)], status)


def _secretary_of(p: Principal, community: str) -> None:
    if not (p.has(Role.SECRETARY) and community in p.communities):
        raise ProjectError("community", "err_project_secretary", status=403)


@dataclass(frozen=True)
class NewProject:
    community: str
    name: str
    kind: str
    provider: str
    targets: str
    budget: str  # as typed: whole yuan
    starts_on: str  # YYYY-MM-DD


def create(couch: Couch, p: Principal, new: NewProject, now: dt.datetime) -> Doc:
    """A new project of the secretary's community; ProjectError names the field that is wrong (nothing stored)."""
    community = queries.load_doc(couch, new.community, "community")
    if community is None:
        raise ProjectError("community", "err_project_secretary", status=403)
    _secretary_of(p, community["_id"])
    for name in ("name", "provider", "targets"):
        if not getattr(new, name).strip():
            raise ProjectError(name, "err_required")
    if new.kind not in PROJECT_KINDS:
        raise ProjectError("kind", "err_not_choice", value=new.kind[:40], choices=", ".join(PROJECT_KINDS))
    if not (new.budget.strip().isdigit() and 0 < int(new.budget) <= MAX_BUDGET):
        raise ProjectError("budget", "err_project_budget", max=MAX_BUDGET)
    try:
        starts = dt.date.fromisoformat(new.starts_on)
    except ValueError:
        raise ProjectError("starts_on", "err_project_date") from None
    doc = {"_id": f"service_project:{uuid.uuid4().hex}", "type": "service_project", "street": community["street"],
           "community": community["_id"], "name": new.name.strip()[:100], "kind": new.kind,
           "provider": new.provider.strip()[:100], "targets": new.targets.strip()[:1000], "budget": int(new.budget),
           "starts_on": starts.isoformat(), "status": "active", "created_by": p.user_id, "created_at": now.isoformat()}
    validate(doc)
    return couch.main.save(doc)


def projects_of(couch: Couch, communities: list[str]) -> list[Doc]:
    """The communities' projects, those waiting for a decision on withdrawal first."""
    found = [d for c in communities for d in iter_view_docs(couch.main, "linli/by_place", [c, "service_project"])]
    return sorted(found, key=lambda d: (d["status"] == "active", d["name"]))


def evaluations_of(couch: Couch, project: Doc) -> list[Doc]:
    """The project's evaluations, oldest period first."""
    found = [d for d in iter_view_docs(couch.main, "linli/by_place", [project["community"], "project_evaluation"])
             if d["project"] == project["_id"]]
    return sorted(found, key=lambda d: d["period"])


def evaluation_id(project: Doc, period: str) -> str:
    return f"project_evaluation:{project['_id'].split(':', 1)[1]}:{period}"


def parse_scores(text: str) -> list[Doc]:
    """The scores as the form takes them, one a line: `criterion: score` (0-100)."""
    scores: list[Doc] = []
    for number, line in enumerate((raw for raw in text.splitlines() if raw.strip()), start=1):
        criterion, _, score = line.replace("：", ":").rpartition(":")
        if not criterion.strip() or not score.strip().isdigit() or int(score) > 100 or len(criterion) > 100:
            raise ProjectError("scores", "err_project_score_line", line=number)
        scores.append({"criterion": criterion.strip(), "score": int(score)})
    if not 1 <= len(scores) <= MAX_CRITERIA:
        raise ProjectError("scores", "err_project_scores", max=MAX_CRITERIA)
    return scores


@dataclass(frozen=True)
class NewEvaluation:
    period: str  # 2026-H1
    scores: str  # as typed, see parse_scores
    evaluator: str
    report: bytes  # the evaluator's report, a PDF


def evaluate(couch: Couch, keys: KeyStore, p: Principal, project: Doc, new: NewEvaluation,
             now: dt.datetime) -> Doc:
    """Record one half-year's evaluation; the second failure in a row proposes withdrawal (`propose_withdrawal`)."""
    _secretary_of(p, project["community"])
    if project["status"] != "active":
        raise ProjectError("period", "err_project_not_active")
    if not _PERIOD.match(new.period):
        raise ProjectError("period", "err_project_period")
    scores = parse_scores(new.scores)
    if not new.evaluator.strip():
        raise ProjectError("evaluator", "err_required")
    if not new.report.startswith(b"%PDF-"):
        raise ProjectError("report", "err_project_report")
    if len(new.report) > MAX_REPORT_BYTES:
        raise ProjectError("report", "err_project_report_size", mb=MAX_REPORT_BYTES // (1024 * 1024))
    score = round(sum(s["score"] for s in scores) / len(scores))
    doc = {"_id": evaluation_id(project, new.period), "type": "project_evaluation", "street": project["street"],
           "community": project["community"], "project": project["_id"], "period": new.period, "scores": scores,
           "score": score, "passed": score >= PASS_MARK, "evaluator": new.evaluator.strip()[:100],
           "created_by": p.user_id, "created_at": now.isoformat()}
    validate(doc)
    others = evaluations_of(couch, project)
    before = [e for e in others if e["period"] < new.period][-1:]
    after = [e for e in others if e["period"] > new.period][:1]  # a half-year entered late has one after it
    doc["_attachments"] = {"report.pdf": {"content_type": "application/pdf",
                                          "data": base64.b64encode(new.report).decode()}}
    try:
        saved = couch.main.save(doc)
    except Conflict:
        raise ProjectError("period", "err_project_evaluated", period=new.period) from None
    in_a_row = [pair for pair in (before + [saved], [saved] + after) if len(pair) == 2
                and not any(e["passed"] for e in pair)]
    if in_a_row:
        propose_withdrawal(couch, keys, p, project, in_a_row[0], now)
    return saved


def propose_withdrawal(couch: Couch, keys: KeyStore, p: Principal, project: Doc, failed: list[Doc],
                       now: dt.datetime) -> Doc:
    """Two failed evaluations in a row: a committee vote on withdrawing the project, and the project marked so."""
    periods = "、".join(f"{e['period']}（{e['score']} 分）" for e in failed)
    matter = deliberation.open_matter(couch, keys, p, deliberation.NewMatter(
        community=project["community"], title=f"撤回服务项目：{project['name']}",
        body=(f"服务项目“{project['name']}”（{project['provider']}）连续两次评估未达标：{periods}，"
              f"及格线 {PASS_MARK} 分。按规定提议撤回。"),
        kind="committee_decision", electorate="committee", rule="committee_two_thirds", options=(),
        opens_at=now, closes_at=now + WITHDRAWAL_VOTE), now)
    project.update(status="withdrawal_proposed", withdrawal_matter=matter["_id"], updated_at=now.isoformat())
    validate(project)
    return couch.main.save(project)


def withdrawal_proposals(couch: Couch, communities: list[str]) -> list[Doc]:
    """Projects waiting for the decision on their withdrawal (the secretary's /today)."""
    return [d for d in projects_of(couch, communities) if d["status"] == "withdrawal_proposed"]


def settle_withdrawal(couch: Couch, project: Doc, result: Doc, now: dt.datetime) -> Doc:
    """The withdrawal vote's published result decides: passed → withdrawn, failed → active again (its next failure,
    after the failed one before it, proposes withdrawal again); the result is linked from the project either way.
    Settling a settled project changes nothing."""
    if project["status"] != "withdrawal_proposed" or result["matter"] != project.get("withdrawal_matter"):
        return project
    project.update(status="withdrawn" if result["passed"] else "active", withdrawal_result=result["_id"],
                   updated_at=now.isoformat())
    validate(project)
    try:
        return couch.main.save(project)
    except Conflict:  # settled meanwhile by another process (the minute sweep)
        return couch.main.get(project["_id"])


def settle_counted_withdrawals(couch: Couch, now: dt.datetime) -> int:
    """Settle every proposed withdrawal whose vote has a result (a process stopped between publishing the result
    and settling the project; the minute clock). Returns how many."""
    settled = 0
    for project in docs_of_type(couch.main, "service_project"):
        if project.get("status") != "withdrawal_proposed" or not project.get("withdrawal_matter"):
            continue
        result = get_or_none(couch.main, deliberation.result_id(project["withdrawal_matter"]))
        if result is not None:
            settle_withdrawal(couch, project, result, now)
            settled += 1
    return settled


def settle_by_result(couch: Couch, result: Doc, now: dt.datetime) -> None:
    """A matter's result just published: settle the project whose withdrawal it decided, if any."""
    for project in projects_of(couch, [result["community"]]):
        if project.get("withdrawal_matter") == result["matter"]:
            settle_withdrawal(couch, project, result, now)
