"""The doctor's report: one text line per check with its fix, details only when verbose, the
summary counts; the JSON shape tools read; and only ``fail`` makes it a failure."""

from __future__ import annotations

import json

import pytest

from ecrcred.doctor.report import (
    FAIL,
    OK,
    SKIP,
    STATUSES,
    WARN,
    Check,
    Report,
    fail,
    ok,
    render_json,
    render_text,
    skip,
    warn,
)

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.9"
ORIGIN = "the sandbox image of /etc/containerd/config.toml"
REPORT = Report(IMAGE, ORIGIN, (
    ok("credentials.rule", "built-in ECR source", ("0 of 0 rules match", "step two")),
    warn("runtime.sandbox-image", "present but not pinned", "run 'ecrcred pull-sandbox'"),
    fail("registry.auth", "refused", "check the role", ("GET /v2/ -> 401",)),
    skip("environment.home", "skipped by --skip environment"),
))


def test_the_constructors_set_the_status_and_leave_ok_and_skip_without_a_fix():
    assert ok("a.b", "m", ("d",)) == Check("a.b", OK, "m", "", ("d",))
    assert warn("a.b", "m", "f") == Check("a.b", WARN, "m", "f", ())
    assert fail("a.b", "m", "f", ("d",)) == Check("a.b", FAIL, "m", "f", ("d",))
    assert skip("a.b", "why") == Check("a.b", SKIP, "why", "", ())


def test_text_has_a_header_one_aligned_line_per_check_with_its_fix_and_a_summary():
    assert render_text(REPORT) == (
        f"ecrcred doctor: {IMAGE} ({ORIGIN})\n"
        "OK    credentials.rule       built-in ECR source\n"
        "WARN  runtime.sandbox-image  present but not pinned; fix: run 'ecrcred pull-sandbox'\n"
        "FAIL  registry.auth          refused; fix: check the role\n"
        "SKIP  environment.home       skipped by --skip environment\n"
        "1 ok, 1 warn, 1 fail, 1 skipped\n")


def test_details_appear_only_when_verbose_indented_under_their_check_message():
    # the message column starts at 29 (status, two spaces, the widest id, two spaces)
    plain = render_text(REPORT)
    verbose = render_text(REPORT, verbose=True)
    for detail in ("0 of 0 rules match", "step two", "GET /v2/ -> 401"):
        assert detail not in plain
    lines = verbose.splitlines()
    rule = lines.index("OK    credentials.rule       built-in ECR source")
    assert lines[rule + 1:rule + 3] == [" " * 31 + "0 of 0 rules match",
                                        " " * 31 + "step two"]
    auth = lines.index("FAIL  registry.auth          refused; fix: check the role")
    assert lines[auth + 1] == " " * 31 + "GET /v2/ -> 401"
    assert len(lines) == len(plain.splitlines()) + 3


def test_an_empty_report_still_has_its_header_and_summary():
    assert render_text(Report(IMAGE, "--image", ())) == (
        f"ecrcred doctor: {IMAGE} (--image)\n0 ok, 0 warn, 0 fail, 0 skipped\n")


def test_json_has_every_field_of_every_check_and_the_summary():
    doc = json.loads(render_json(REPORT))
    assert doc == {
        "image": IMAGE,
        "imageOrigin": ORIGIN,
        "checks": [
            {"id": "credentials.rule", "status": "ok", "message": "built-in ECR source",
             "fix": "", "details": ["0 of 0 rules match", "step two"]},
            {"id": "runtime.sandbox-image", "status": "warn",
             "message": "present but not pinned", "fix": "run 'ecrcred pull-sandbox'",
             "details": []},
            {"id": "registry.auth", "status": "fail", "message": "refused",
             "fix": "check the role", "details": ["GET /v2/ -> 401"]},
            {"id": "environment.home", "status": "skip",
             "message": "skipped by --skip environment", "fix": "", "details": []},
        ],
        "summary": {"ok": 1, "warn": 1, "fail": 1, "skip": 1},
        "failed": True,
    }
    assert render_json(REPORT).endswith("}\n")


@pytest.mark.parametrize(("statuses", "failed"), [
    ((), False),
    ((OK,), False),
    ((OK, WARN, SKIP), False),
    ((WARN, WARN), False),
    ((FAIL,), True),
    ((OK, WARN, SKIP, FAIL), True),
])
def test_only_a_failed_check_fails_the_report(statuses: tuple[str, ...], failed: bool):
    report = Report(IMAGE, "--image", tuple(Check(f"a.c{i}", s, "m", "f" if s in (WARN, FAIL)
                                                  else "") for i, s in enumerate(statuses)))
    assert report.failed is failed
    assert json.loads(render_json(report))["failed"] is failed


def test_counts_cover_every_status_even_at_zero():
    report = Report(IMAGE, "--image", (ok("a.b", "m"), ok("a.c", "m"), warn("a.d", "m", "f")))
    assert report.counts() == {OK: 2, WARN: 1, FAIL: 0, SKIP: 0}
    assert list(report.counts()) == list(STATUSES)
