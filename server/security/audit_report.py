"""The audit report over the filing log (plan §5.1: use of resident data audited regularly, anomalies traced).

Per period: who opened whose protected data how often, and three patterns worth a
person's second look:
- outside assignment: a worker opening residents outside their grids (a secretary: outside their communities);
- night: openings between 22:00 and 06:00 local time;
- many records: one person opening more than MANY_RESIDENTS_A_DAY different residents in one day.
A finding is a lead for the secretary, not a verdict: the report names the entries.

Each report also publishes the filing log's head as anchored outside the database
(server/security/filing_anchor.py: entry, hash, signature): whoever keeps a copy can later
check that the log still reaches it (`linli audit verify --head`), which catches a log cut
short even by someone who could roll back both the database and the data folder.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from server.security.filing import iter_entries
from server.security.filing_anchor import HeadAnchor
from server.store.couch import Couch, get_many

NIGHT_STARTS, NIGHT_ENDS = 22, 6
MANY_RESIDENTS_A_DAY = 30


@dataclass(frozen=True)
class Finding:
    actor: str
    kind: str  # outside_assignment | night | many_records
    detail: str
    seqs: tuple[int, ...]


@dataclass
class ActorSummary:
    opens: int = 0
    residents: set[str] = field(default_factory=set)
    fields: Counter[str] = field(default_factory=Counter)
    purposes: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    community: str
    start: dt.date
    end: dt.date
    entries: int = 0
    actors: dict[str, ActorSummary] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    head: dict[str, Any] | None = None  # the anchored head when the report was made: {seq, hash, signature, at}


def build(community: str, entries: Iterable[dict[str, Any]], residents: dict[str, dict[str, Any]],
          users: dict[str, dict[str, Any]], start: dt.date, end: dt.date, tz: ZoneInfo) -> Report:
    """The report for entries whose local date lies in [start, end]; pure, for tests and for the command."""
    report = Report(community, start, end)
    outside: dict[str, list[int]] = defaultdict(list)
    night: dict[str, list[int]] = defaultdict(list)
    per_day: dict[tuple[str, dt.date], dict[str, int]] = defaultdict(dict)
    for entry in entries:
        at = dt.datetime.fromisoformat(entry["at"]).astimezone(tz)
        if not start <= at.date() <= end:
            continue
        actor = entry["actor"]
        report.entries += 1
        summary = report.actors.setdefault(actor, ActorSummary())
        summary.opens += 1
        summary.residents.add(entry["target"])
        summary.fields.update(entry.get("fields", []))
        summary.purposes[entry.get("purpose", "")] += 1
        if not _assigned(users.get(actor, {}), residents.get(entry["target"], {}), entry["target"]):
            outside[actor].append(entry["seq"])
        if at.hour >= NIGHT_STARTS or at.hour < NIGHT_ENDS:
            night[actor].append(entry["seq"])
        per_day[(actor, at.date())].setdefault(entry["target"], entry["seq"])
    for actor, seqs in outside.items():
        report.findings.append(Finding(actor, "outside_assignment", f"{len(seqs)} openings outside their assignment",
                                       tuple(seqs)))
    for actor, seqs in night.items():
        report.findings.append(Finding(actor, "night", f"{len(seqs)} openings between "
                                       f"{NIGHT_STARTS}:00 and {NIGHT_ENDS:02d}:00", tuple(seqs)))
    for (actor, day), targets in sorted(per_day.items()):
        if len(targets) > MANY_RESIDENTS_A_DAY:
            report.findings.append(Finding(actor, "many_records", f"{len(targets)} different residents on {day}",
                                           tuple(sorted(targets.values()))))
    return report


def _assigned(user: dict[str, Any], resident: dict[str, Any], target: str) -> bool:
    if user.get("resident") == target:
        return True
    if "secretary" in user.get("roles", []) and resident.get("community") in user.get("communities", []):
        return True
    return "grid_worker" in user.get("roles", []) and resident.get("grid") in user.get("grids", [])


def for_community(couch: Couch, anchor: HeadAnchor, community: str, start: dt.date, end: dt.date,
                  tz: ZoneInfo) -> Report:
    entries = list(iter_entries(couch, community))
    residents = get_many(couch.main, {e["target"] for e in entries})
    users = get_many(couch.accounts, {e["actor"] for e in entries})
    report = build(community, entries, residents, users, start, end, tz)
    report.head = anchor.heads().get(community)
    return report


def render_text(report: Report) -> str:
    people = len(report.actors)
    lines = [f"Audit report {report.community}, {report.start} to {report.end}: {report.entries} openings "
             f"by {people} {'person' if people == 1 else 'people'}"]
    for actor, s in sorted(report.actors.items(), key=lambda kv: -kv[1].opens):
        purposes = ", ".join(f"{p or '-'} ×{n}" for p, n in s.purposes.most_common(3))
        purposes += ", …" if len(s.purposes) > 3 else ""
        lines.append(f"  {actor:<24} {s.opens:>5} openings, {len(s.residents):>4} residents; purposes: {purposes}")
    lines.append(f"Findings: {len(report.findings)}" if report.findings else "Findings: none")
    for f in report.findings:
        shown = ", ".join(map(str, f.seqs[:10])) + (" …" if len(f.seqs) > 10 else "")
        lines.append(f"  [{f.kind}] {f.actor}: {f.detail} (entries {shown})")
    if report.head:
        h = report.head
        lines += [f"Filing-log head: entry {h['seq']}, hash {h['hash']}, signature {h['signature']}",
                  f"  (keep a copy; later, `linli audit verify --head {report.community}:{h['seq']}:{h['hash']}` "
                  "checks that the log still reaches it)"]
    return "\n".join(lines)
