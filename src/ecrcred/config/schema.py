"""The config file's model, validated with pydantic, and its compiled (plain JSON) form.

Only ``config.load`` imports this, and only when the file changed since it was last compiled:
pydantic and PyYAML together cost about 100 ms to import, more than a whole cache-hit execution.

The file is YAML (or JSON), in the Kubernetes style: ``apiVersion``, ``kind``, camelCase fields,
unknown or duplicated fields rejected. Every error names the file, the field path
(``registries[2].static.passwordFile``) and what is expected. The README documents the format.

These models are the validation layer only: the compiled form is plain JSON, and
``rules.from_compiled`` turns it into the typed records (``rules.EcrOptions`` and its siblings)
that the router and the sources read. The models keep their names because pydantic puts them in
its messages ("an instance of EcrOptions").
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ecrcred.config import API_VERSION, DEFAULT_ROLE_ANNOTATIONS, KIND
from ecrcred.errors import ConfigError
from ecrcred.imageref import parses_as_url
from ecrcred.kubelet import digits_limit, parse_go_duration
from ecrcred.kubeletconfig import StrictLoader
from ecrcred.log import quote_untrusted
from ecrcred.sources.ecr import ROLE_ARN_PATTERN
from ecrcred.sources.helper import MAX_NAME, helper_name_problem

SOURCES = ("ecr", "static", "dockerConfig", "credentialHelper", "mirrorOf")
_ROLE_ARN = re.compile(ROLE_ARN_PATTERN)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
_REGION = re.compile(r"[a-z]{2,4}(?:-[a-z]+)+-\d{1,2}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _duration(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError('a duration is a string such as "5m", "90s" or "12h"')  # noqa: TRY004 - pydantic wants ValueError
    seconds = parse_go_duration(value)  # ValueError with the kubelet's wording
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    # Whole seconds, rounded up: "500ms" must not become 0, which the kubelet reads as "do not
    # cache" and a timeout as "no time at all".
    return math.ceil(seconds)


def _matching(pattern: re.Pattern[str], expected: str, *, echo: bool = True) -> Any:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"expected {expected}, got {value!r}" if echo else
                             f"expected {expected}")
        return value

    return AfterValidator(check)


def _helper_name(value: str) -> str:
    # The rule docker config files' credsStore and credHelpers are held to as well.
    problem = helper_name_problem(value)
    if problem is not None:
        got = f", got {value!r}" if len(value) <= MAX_NAME else ""
        raise ValueError(f"expected the part after docker-credential-, e.g. gcloud ({problem})"
                         f"{got}")
    return value


def _absolute(value: str) -> str:
    # A field validator, so that the error names registries[N].static.passwordFile itself.
    if not value.startswith("/"):
        raise ValueError("expected an absolute path (the kubelet's working directory is not "
                         "ours to choose)")
    return value


def _account(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML reads 123456789012 as a number and would drop a leading zero: insist on quotes.
        raise ValueError('an account id is 12 digits in quotes, e.g. "012345678901"')  # noqa: TRY004
    return value


Duration = Annotated[int, BeforeValidator(_duration)]
RoleArn = Annotated[str, _matching(_ROLE_ARN, "an IAM role ARN (arn:aws:iam::<account>:role/...)")]
SessionName = Annotated[str, _matching(_SESSION_NAME, "2-64 characters of [A-Za-z0-9_+=,.@-]")]
Account = Annotated[str, BeforeValidator(_account),
                    _matching(re.compile(r"\d{12}"), "a 12-digit AWS account id")]
Region = Annotated[str, _matching(_REGION, "an AWS region such as us-west-2")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, strict=True, frozen=True)


class EcrOptions(_Model):
    """ECR, optionally for a host that is not an ECR name (a custom domain or proxy in front of
    ECR: give account and region), through an assumed role, FIPS or dual-stack endpoints."""

    region: Region | None = None
    account: Account | None = None
    role_arn: RoleArn | None = None
    external_id: Annotated[str, _matching(_EXTERNAL_ID, "2-1224 characters of "
                                          "[A-Za-z0-9_+=,.@:/-]", echo=False)] | None = None
    session_name: SessionName = "ecrcred"
    fips: bool | None = None  # None: as the registry's host name says
    dualstack: bool | None = None

    @model_validator(mode="after")
    def _external_id_needs_role(self) -> EcrOptions:
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("externalId is only used with roleArn")
        return self


class StaticOptions(_Model):
    """A username and a password kept in a file or an environment variable, never inline."""

    username: Annotated[str, Field(min_length=1)]
    password_file: Annotated[str, Field(min_length=1), AfterValidator(_absolute)] | None = None
    # echo=False: a password pasted here by mistake must not reach the kubelet's log
    password_env: Annotated[str, _matching(_ENV_NAME, "an environment variable name",
                                           echo=False)] | None = None
    password: Any = None  # only to explain why it is refused

    @model_validator(mode="after")
    def _one_password_source(self) -> StaticOptions:
        if self.password is not None:
            raise ValueError("an inline password is not accepted (the file may be world-readable "
                             "and ends up in backups); use passwordFile or passwordEnv")
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("expected exactly one of passwordFile or passwordEnv")
        return self


class DockerConfigOptions(_Model):
    """Docker config files: ``paths`` in order, or the kubelet's own search order."""

    paths: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = None
    kubelet_root_dir: str = "/var/lib/kubelet"


class HelperOptions(_Model):
    """A ``docker-credential-<name>`` program on PATH."""

    name: Annotated[str, AfterValidator(_helper_name)]
    timeout: Duration = 5


class Rule(_Model):
    """Images matching ``match`` (kubelet globs) get credentials from exactly one source."""

    match: Annotated[list[str], Field(min_length=1)]
    ecr: EcrOptions | None = None
    static: StaticOptions | None = None
    docker_config: DockerConfigOptions | None = None
    credential_helper: HelperOptions | None = None
    mirror_of: Annotated[str, Field(min_length=1)] | None = None
    cache_duration: Duration | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Rule:
        given = [name for name in SOURCES if getattr(self, to_snake(name)) is not None]
        if len(given) != 1:
            raise ValueError(f"expected exactly one source ({', '.join(SOURCES)}), got "
                             f"{', '.join(given) or 'none'}")
        for pattern in self.match:
            if not pattern or "://" in pattern or not parses_as_url(pattern):
                raise ValueError(f"match pattern {pattern!r} is not a host[:port][/path] glob")
        if self.mirror_of is not None and (
            "*" in self.mirror_of or "?" in self.mirror_of or "://" in self.mirror_of
                or not parses_as_url(self.mirror_of)):
            raise ValueError(f"mirrorOf {self.mirror_of!r} must be a registry host[:port][/path] "
                             "without wildcards or scheme")
        return self

    @property
    def source(self) -> str:
        return next(name for name in SOURCES if getattr(self, to_snake(name)) is not None)


class PodIdentity(_Model):
    """Per-pod roles (KEP-4412): which annotations name the role, a default, and what to do when
    the pod names none."""

    role_annotations: list[str] = Field(default_factory=lambda: list(DEFAULT_ROLE_ANNOTATIONS))
    role_arn: RoleArn | None = None
    fallback: Literal["node", "deny"] = "node"
    session_name: SessionName = "ecrcred"


class SandboxOptions(_Model):
    """``pull-sandbox``: the image archive to import the sandbox image from (``--archive``,
    which wins over it)."""

    archive: Annotated[str, Field(min_length=1), AfterValidator(_absolute)] | None = None


def _registry_or_image(value: str) -> str:
    if "*" in value or "?" in value or "://" in value or not parses_as_url(value):
        raise ValueError(f"expected an image or a registry host[:port] without wildcards or "
                         f"scheme, got {quote_untrusted(value)}")
    return value


class RefreshOptions(_Model):
    """``pull-sandbox --watch``: refresh ahead of the kubelet's executions. ``prefetch``: images
    or registry hosts whose tokens are fetched when the agent starts (the sandbox image's always
    is); ``enabled: false`` turns refreshing off."""

    enabled: bool = True
    prefetch: list[Annotated[str, Field(min_length=1, max_length=512),
                             AfterValidator(_registry_or_image)]] = Field(default_factory=list)


class ConfigFile(_Model):
    api_version: Literal["ecrcred.io/v1alpha1"]
    kind: Literal["EcrcredConfig"]
    registries: list[Rule] = Field(default_factory=list)
    pod_identity: PodIdentity = Field(default_factory=PodIdentity)
    sandbox: SandboxOptions = Field(default_factory=SandboxOptions)
    refresh: RefreshOptions = Field(default_factory=RefreshOptions)


def to_snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), name)


def compile_text(text: str, path: str) -> dict[str, Any]:
    """Validate a config file's text and return its compiled form (plain JSON values), or raise
    ConfigError naming the file, the field and what is expected."""
    try:
        return _compile(text, path)
    except RecursionError:  # PyYAML recurses once per nesting level: "[[[[…" in a few KiB
        raise ConfigError(f"config {path} is nested too deeply to be an ecrcred config",
                          hint="see the README's config section: it is a few levels deep"
                          ) from None


def _compile(text: str, path: str) -> dict[str, Any]:
    try:
        doc = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config {path}: {where}{quote_untrusted(problem)}",
                          hint="fix the YAML syntax") from None
    except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as exc:
        # PyYAML's constructors convert the file's scalars with int(), float(), datetime() and
        # table look-ups, and hash its keys, and let what those raise through: a date that
        # does not exist, a number past Python's digit limit, a list as a key, "!!bool x".
        limit = digits_limit(exc) if isinstance(exc, ValueError) else None
        what = (f"a number of more than {limit} digits" if limit is not None else
                f"a value or key that cannot be read ({quote_untrusted(str(exc))})")
        raise ConfigError(f"config {path} holds {what}", hint="quote a value meant as text, "
                          "and leave out '!!' tags: an ecrcred config needs none") from None
    if doc is None:
        doc = {"apiVersion": API_VERSION, "kind": KIND}  # an empty file is the defaults
    try:
        model = ConfigFile.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(f"config {path}: {describe_errors(exc)}",
                          hint=f"see the README's config section (apiVersion {API_VERSION}, "
                          f"kind {KIND})") from None
    return {
        "registries": [
            {
                "index": index,
                "match": list(rule.match),
                "source": rule.source,
                "options": _options(rule),
                "cacheDuration": rule.cache_duration,
            }
            for index, rule in enumerate(model.registries)
        ],
        "podIdentity": model.pod_identity.model_dump(),
        "sandbox": model.sandbox.model_dump(),
        "refresh": model.refresh.model_dump(),
    }


def _options(rule: Rule) -> dict[str, Any]:
    value = getattr(rule, to_snake(rule.source))
    if isinstance(value, BaseModel):
        dumped = value.model_dump(exclude_none=False)
        dumped.pop("password", None)
        return dumped
    return {"target": value}


def describe_errors(exc: ValidationError, limit: int = 3) -> str:
    """pydantic's errors as ``field.path: what is expected`` (one line; input values left out,
    since a misplaced password would otherwise be echoed)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        where = _path(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "literal_error":
            message = message.replace("Input should be", "expected")
        parts.append(f"{where}: {message}" if where else message)
    more = len(exc.errors()) - limit
    text = "; ".join(parts)
    return f"{text} (and {more} more)" if more > 0 else text


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after[_check()]", "function-before[_account()]"):
            continue
        else:
            # A key of the file itself when it is an unknown field: bounded and escaped.
            name = quote_untrusted(str(part))
            out += f".{name}" if out else name
    return out
