"""Diagnostic lines on stderr: levels, one line per message, and secrets scrubbed."""

from __future__ import annotations

import io

import pytest

from ecrcred.log import (
    DEBUG,
    ERROR,
    INFO,
    WARNING,
    StderrLogger,
    quote_untrusted,
    redact,
    register_environment_secrets,
)


def logger(level: int = DEBUG) -> tuple[StderrLogger, io.StringIO]:
    stream = io.StringIO()
    return StderrLogger(stream=stream, level=level), stream


@pytest.mark.parametrize(("method", "name"), [
    ("debug", "debug"), ("info", "info"), ("warning", "warning"), ("error", "error"),
])
def test_each_level_writes_one_prefixed_line(method: str, name: str):
    log, stream = logger()
    getattr(log, method)("the registry answered")
    assert stream.getvalue() == f"ecrcred: {name}: the registry answered\n"


@pytest.mark.parametrize(("level", "written"), [
    (DEBUG, ["debug", "info", "warning", "error"]),
    (INFO, ["info", "warning", "error"]),
    (WARNING, ["warning", "error"]),
    (ERROR, ["error"]),
])
def test_lines_below_the_level_are_dropped(level: int, written: list[str]):
    log, stream = logger(level)
    for name in ("debug", "info", "warning", "error"):
        getattr(log, name)("x")
    assert [line.split(": ")[1] for line in stream.getvalue().splitlines()] == written


@pytest.mark.parametrize("message", [
    "first line\nsecond line",
    "windows\r\nline",
    "trailing newline\n",
    "tabs\tand   spaces",
    "\n\nleading blank lines",
])
def test_every_message_becomes_exactly_one_line(message: str):
    log, stream = logger()
    log.warning(message)
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert text.endswith("\n")
    assert "\r" not in text
    assert text == "ecrcred: warning: " + " ".join(message.split()) + "\n"


def test_registered_secrets_are_replaced_in_every_line():
    log, stream = logger()
    log.add_secret("eyJhbGciOi-token-value")
    log.add_secret("ecr-password-value")
    log.info("token eyJhbGciOi-token-value and ecr-password-value, again ecr-password-value")
    log.error("ecr-password-value")
    assert stream.getvalue() == (
        "ecrcred: info: token <redacted> and <redacted>, again <redacted>\n"
        "ecrcred: error: <redacted>\n"
    )


def test_scrub_replaces_the_longer_of_two_overlapping_secrets_whole():
    log, _ = logger()
    log.add_secret("secret")
    log.add_secret("secret-and-more")
    assert log.scrub("x secret-and-more y secret z") == "x <redacted> y <redacted> z"


def test_a_secret_that_spans_a_newline_is_scrubbed_before_lines_are_joined():
    log, stream = logger()
    log.add_secret("multi\nline-secret")
    log.warning("got multi\nline-secret here")
    assert stream.getvalue() == "ecrcred: warning: got <redacted> here\n"


@pytest.mark.parametrize(("secret", "registered"), [
    (None, False),
    ("", False),
    ("AWS", False),
    ("abcde", False),
    ("abcdef", True),
    ("a-long-password-value", True),
])
def test_short_strings_are_not_registered_as_secrets(secret: str | None, registered: bool):
    log, _ = logger()
    log.add_secret(secret)
    text = f"user AWS said {secret or ''} today"
    assert (log.scrub(text) != text) is registered


def test_without_a_stream_lines_go_to_stderr_and_never_stdout(capsys: pytest.CaptureFixture[str]):
    log = StderrLogger()
    log.warning("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "ecrcred: warning: to stderr\n"


def test_the_prefix_is_configurable():
    stream = io.StringIO()
    StderrLogger(stream=stream, prefix="ecrcred-keeper").error("boom")
    assert stream.getvalue() == "ecrcred-keeper: error: boom\n"


# -- the environment's secrets, and text about to be cut -----------------------------------------

ENV_SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN",
    "AWS_SECURITY_TOKEN": "IQoJb3JpZ2luX2VjLEGACYSECURITYTOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-credentials-bearer-token",
}


@pytest.mark.parametrize("name", sorted(ENV_SECRETS))
def test_each_secret_the_environment_gives_botocore_is_scrubbed_once_registered(name: str):
    log, stream = logger()
    register_environment_secrets(log, {**ENV_SECRETS, "AWS_ACCESS_KEY_ID": "AKIANOTASECRET0001",
                                       "PATH": "/usr/bin"})
    log.error(f"the endpoint said: {ENV_SECRETS[name]} (key AKIANOTASECRET0001)")
    assert stream.getvalue() == ("ecrcred: error: the endpoint said: <redacted> "
                                 "(key AKIANOTASECRET0001)\n")


def test_registering_an_environment_without_secrets_scrubs_nothing():
    log, _ = logger()
    register_environment_secrets(log, {"PATH": "/usr/bin", "AWS_SESSION_TOKEN": ""})
    assert log.scrub("/usr/bin and nothing else") == "/usr/bin and nothing else"


def test_redact_removes_secrets_before_a_cut_could_split_them():
    secret = "s3cr3t-session-token-" + "x" * 50
    text = "m" * 190 + secret
    assert quote_untrusted(redact(text, [secret, None, "abc"])) == "m" * 190 + "<redacted>"
    assert redact("secret and secret-and-more", ["secret", "secret-and-more"]) == (
        "<redacted> and <redacted>")
    assert redact("short abc stays", ["abc", None, ""]) == "short abc stays"


def test_a_line_with_an_escape_sequence_or_a_flood_is_escaped_and_bounded_by_the_logger():
    # The last line of defence for text a caller forgot to quote (the request's image, say).
    stream = io.StringIO()
    log = StderrLogger(stream=stream)
    log.error("no rule for \x1b[2Jevil.example/app")
    log.error("no rule for " + "h" * 300_000)
    escaped, flooded = stream.getvalue().splitlines()
    assert "\x1b" not in escaped and "\\x1b[2Jevil.example/app" in escaped
    assert len(flooded) < 4200 and flooded.endswith("chars)")
