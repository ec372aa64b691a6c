"""The doctor's findings: one ``Check`` per question, and the report as text or JSON.

A check is ``ok``, ``warn``, ``fail`` or ``skip`` (could not run, with the reason). Only ``fail``
makes ``doctor`` exit non-zero: a warning is something to know (a deprecated setting, a version
that some runtimes refuse), not a broken pull path. Messages and fixes never hold a secret; the
CLI also scrubs the rendered report with the logger's list of secrets.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import NamedTuple

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)


class Check(NamedTuple):
    id: str  # "<area>.<question>", stable for tools: credentials.rule, registry.manifest, ...
    status: str  # one of STATUSES
    message: str  # what was found, naming the file, host, rule or version
    fix: str = ""  # what to do, for warn and fail
    details: tuple[str, ...] = ()  # the steps behind the verdict (shown with -v and in JSON)


def ok(id_: str, message: str, details: tuple[str, ...] = ()) -> Check:
    return Check(id_, OK, message, "", details)


def warn(id_: str, message: str, fix: str, details: tuple[str, ...] = ()) -> Check:
    return Check(id_, WARN, message, fix, details)


def fail(id_: str, message: str, fix: str, details: tuple[str, ...] = ()) -> Check:
    return Check(id_, FAIL, message, fix, details)


def skip(id_: str, reason: str) -> Check:
    return Check(id_, SKIP, reason)


class Report(NamedTuple):
    image: str
    image_origin: str  # "--image", or the containerd config the sandbox image came from
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        counted = Counter(c.status for c in self.checks)
        return {status: counted.get(status, 0) for status in STATUSES}


def render_text(report: Report, verbose: bool = False) -> str:
    width = max((len(c.id) for c in report.checks), default=0)
    lines = [f"ecrcred doctor: {report.image} ({report.image_origin})"]
    for check in report.checks:
        line = f"{check.status.upper():<4}  {check.id:<{width}}  {check.message}"
        if check.fix:
            line += f"; fix: {check.fix}"
        lines.append(line)
        if verbose:
            lines += [f"{'':<4}  {'':<{width}}    {detail}" for detail in check.details]
    counts = report.counts()
    lines.append(f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail, {counts[SKIP]} "
                 "skipped")
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    return json.dumps({
        "image": report.image,
        "imageOrigin": report.image_origin,
        "checks": [{"id": c.id, "status": c.status, "message": c.message, "fix": c.fix,
                    "details": list(c.details)} for c in report.checks],
        "summary": report.counts(),
        "failed": report.failed,
    }, indent=2) + "\n"
