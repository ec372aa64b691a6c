"""The botocore adapters behind the ``EcrApi`` and ``StsApi`` seams, and their error mapping.

botocore is imported only when a token must really be fetched, so the cache-hit path never pays for
botocore. Every botocore failure becomes an ``AwsError`` that names the call and the registry or
role and says what to check. What AWS (or whatever answers in its place) says is repeated
only bounded, escaped and with every secret ecrcred knows of removed first: the environment's
keys and tokens, the chain's resolved ones, an assumed role's, a pod's token. Clients honour the
standard AWS environment: credential chain, retry mode and attempts, ``AWS_ENDPOINT_URL_ECR``,
``AWS_ENDPOINT_URL_ECR_PUBLIC``, ``AWS_ENDPOINT_URL_STS``.

The environment: the adapters are given the environment ecrcred was given, and botocore reads
the process's own (``os.environ``, and ``os.path.expanduser`` for ``~/.aws``): it has no
supported way to be handed another, and ``~`` is expanded by the standard library, not by
botocore. Rather than patch ``os.environ`` for the length of a call (process-wide, under
threads) or rebuild botocore's credential chain from its private parts, the adapters check that
the two agree on every variable that decides identity and endpoints (the list the cache key is
made of, ``ecr.IDENTITY_ENV``) before they make a session, and refuse a mismatch as a wiring bug
(exit 70). The cache key is computed from the given environment, so this check is what makes
"the token was fetched as the identity its key names" hold.
"""

from __future__ import annotations

from ecrcred._record import Record
from ecrcred.errors import AwsError, AwsThrottled, WiringError
from ecrcred.log import MAX_QUOTED, SECRET_ENV, quote_untrusted, redact

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from ecrcred.ecrhost import EcrRegistry


class AuthorizationData(Record):
    """What the token API returned: base64 ``user:password``, expiry and the server's clock."""

    token: str
    expires_at: float | None
    server_time: float | None

    def __repr__(self) -> str:
        return f"AuthorizationData(token=<redacted>, expires_at={self.expires_at!r})"


class AwsCredentials(Record):
    """Temporary AWS credentials from STS (an assumed role): held in memory only."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float | None

    def __repr__(self) -> str:
        return f"AwsCredentials(access_key_id={self.access_key_id!r}, secret=<redacted>)"


# The error codes by which ECR, ECR Public and STS say "over the rate limit" (botocore retries
# them in standard mode; these are what is left when its attempts are spent).
THROTTLING_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "Throttling",
                              "RequestLimitExceeded"})


def _config(env: Mapping[str, str], timeout: float, region: str, *, fips: bool = False,
            dualstack: bool = False) -> Any:
    from botocore.config import Config

    retries: dict[str, Any] = {}
    if "AWS_RETRY_MODE" not in env and "AWS_MAX_ATTEMPTS" not in env:
        retries = {"mode": "standard", "total_max_attempts": 4}
    return Config(  # type: ignore[call-arg]  # user_agent_appid: botocore>=1.32
        region_name=region,
        connect_timeout=min(5.0, timeout),
        read_timeout=timeout,
        retries=retries or None,  # type: ignore[arg-type]
        use_fips_endpoint=fips,
        use_dualstack_endpoint=dualstack,
        user_agent_appid="ecrcred",
    )


def botocore_reads(env: Mapping[str, str]) -> None:
    """Refuse (``WiringError``) an ``env`` that differs from ``os.environ`` in a variable that
    decides who botocore is or which server answers (see the module doc)."""
    import os

    from ecrcred.sources.ecr import ENDPOINT_ENV_PREFIX, IDENTITY_ENV

    if env is os.environ:
        return
    names = {*IDENTITY_ENV, *SECRET_ENV}
    names.update(n for source in (env, os.environ) for n in source
                 if n.startswith(ENDPOINT_ENV_PREFIX))
    differ = sorted(n for n in names if env.get(n) != os.environ.get(n))
    if differ:
        raise WiringError("the AWS clients were given an environment that differs from the "
                          f"process's in {', '.join(differ[:5])}; botocore reads the "
                          "process's own")


# The services whose models a client is ever made of (the artifact ships only these; see
# build/ecrcred.spec).
SERVICES = ("ecr", "ecr-public", "sts")

# One data loader per AWS_DATA_PATH for the process: it caches what it parsed, so a second
# session (an assumed role's, STS's) does not read the models and endpoints again.
_LOADERS: dict[str | None, Any] = {}


def _loader(data_path: str | None) -> Any:
    """botocore's ``Loader`` over the same search paths its own ``create_loader`` would use
    (``AWS_DATA_PATH``, ``~/.aws/models``, botocore's data), listing only ``SERVICES``.

    ``Loader.load_service_model`` lists every service directory of every search path (about
    460 of them, two ``listdir`` each, 20 ms in a plain install) to check that the one asked
    for exists; a client of ours is only ever made for ``SERVICES``, so only those are looked
    for, the same way. ``tests/unit/test_sources_aws_loader.py`` checks it against botocore's
    own listing, so an upgrade that changes the listing fails there."""
    if data_path in _LOADERS:
        return _LOADERS[data_path]
    import json
    import os

    from botocore.loaders import JSONFileLoader, Loader

    class DictFileLoader(JSONFileLoader):
        """botocore's ``JSONFileLoader``, but with plain dicts: it parses with
        ``object_pairs_hook=OrderedDict``, which takes the JSON scanner off its fast path and
        makes its 1.2 MB ``endpoints.json`` cost 17 ms instead of 7. Dicts keep their order,
        which is all botocore asked of ``OrderedDict`` (checked against its loader, same
        test module)."""

        def load_file(self, file_path: str) -> Any:
            for ext in (".json", ".json.gz"):
                full_path = file_path + ext
                if not os.path.isfile(full_path):
                    continue
                if ext == ".json":
                    with open(full_path, "rb") as fp:
                        return json.loads(fp.read().decode("utf-8"))
                import gzip

                with gzip.open(full_path, "rb") as fp:
                    return json.loads(fp.read().decode("utf-8"))
            return None

    class ServicesLoader(Loader):
        def list_available_services(self, type_name: str) -> list[str]:
            found: set[str] = set()
            for base in self.search_paths:
                for name in SERVICES:
                    directory = os.path.join(base, name)
                    if not os.path.isdir(directory):
                        continue
                    for version in os.listdir(directory):
                        if self.file_loader.exists(os.path.join(directory, version,
                                                                type_name)):
                            found.add(name)
                            break
            return sorted(found)

    paths = None
    if data_path is not None:  # what botocore.loaders.create_loader does with it
        paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
    loader = _LOADERS[data_path] = ServicesLoader(extra_search_paths=paths,
                                                  file_loader=DictFileLoader())
    return loader


def _session(env: Mapping[str, str], credentials: AwsCredentials | None) -> Any:
    """A botocore session. boto3's ``Session`` wraps one and adds resources and s3transfer,
    which ecrcred never uses; importing boto3 (with s3transfer and multiprocessing) cost 70 M
    instructions, about 17 ms, of every miss. boto3 stays a declared dependency in
    pyproject.toml all the same: it is what brings botocore in, in the range its maintainers
    release the two together, and dropping it would be a packaging change (the Debian
    package, the release build's virtualenv, installs next to tools that import boto3) that
    this does not need."""
    botocore_reads(env)
    import botocore.session

    session = botocore.session.Session()
    session.register_component("data_loader", _loader(session.get_config_variable("data_path")))
    if credentials is not None:
        session.set_credentials(credentials.access_key_id, credentials.secret_access_key,
                                credentials.session_token)
    return session


def _no_secrets() -> Iterable[str | None]:
    return ()


def call_aws(what: str, call: Callable[[], Any], hint: Callable[[str], str],
             secrets: Callable[[], Iterable[str | None]] = _no_secrets) -> Any:
    """Run one botocore call; turn its failures into an AwsError about ``what``. ``secrets``
    (asked only on failure) are removed from the server's text before it is cut to length,
    where the logger's scrub would no longer find a secret whole."""

    def quoted(text: object, limit: int = MAX_QUOTED) -> str:
        try:
            known = list(secrets())
        except Exception:  # noqa: BLE001 - only a second line of defence; the message must go out
            known = []
        return quote_untrusted(redact(str(text), known), limit)

    import gc

    # The cyclic collector is paused for the call: importing botocore and making a client
    # allocate a few hundred thousand objects, almost none of them garbage, and the collector
    # walked them again and again (19 M instructions of a miss, callgrind). Paused, not
    # frozen: a long-running command (pull-sandbox, write-auth-file --watch) gets it back.
    paused = gc.isenabled()
    gc.disable()
    try:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )
        from botocore.parsers import ResponseParserError

        try:
            return call()
        except NoCredentialsError:
            raise AwsError(
                f"{what} failed: no AWS credentials were found",
                hint="give the node an instance role, or set AWS_* credentials in the kubelet "
                "provider's env (without HOME, ~/.aws is the home of the user ecrcred runs as)",
                code="AWS_NO_CREDENTIALS",
            ) from None
        except EndpointConnectionError as exc:
            raise AwsError(
                f"{what} failed: cannot reach "
                f"{quoted(exc.kwargs.get('endpoint_url', 'the endpoint'))}",
                hint="check the node's network path to the AWS API (VPC endpoint, proxy, DNS)",
                code="AWS_UNREACHABLE",
            ) from None
        except ClientError as exc:
            # Code and Message are the server's text: a proxy's page, an echo of our request.
            error = exc.response.get("Error") or {}
            code = str(error.get("Code") or "Unknown")
            kind = AwsThrottled if code in THROTTLING_CODES else AwsError
            raise kind(
                f"{what} failed: {quoted(code, MAX_CODE_TEXT)}: "
                f"{quoted(error.get('Message') or '')}".rstrip(": "),
                hint=hint(code),
                code=f"AWS_{_upper_snake(code)}",
            ) from None
        except BotoCoreError as exc:
            # Its text can carry a server's (a container credentials endpoint's reply, say).
            raise AwsError(f"{what} failed: {quoted(exc)}", hint="retry; if it persists run "
                           "ecrcred with --debug", code="AWS_CLIENT") from None
        except (ResponseParserError, ValueError, TypeError, AttributeError, OverflowError,
                RuntimeError) as exc:
            # A reply botocore cannot read (truncated, HTML from a proxy, a field of the wrong
            # type): ResponseParserError is no BotoCoreError, and the others come out of its
            # parsers (RuntimeError: a timestamp no datetime holds, such as an expiresAt of 1e20;
            # RecursionError: nesting deeper than the parser goes). Their text can quote the reply,
            # which may hold a token or an STS secret key, so only the exception's name goes into
            # the message.
            raise AwsError(
                f"{what} failed: the reply is not what the AWS API documents "
                f"({type(exc).__name__})",
                hint="something other than AWS may be answering: check AWS_ENDPOINT_URL_* and any "
                "proxy or VPC endpoint between the node and AWS",
                code="AWS_BAD_REPLY",
            ) from None
    finally:
        if paused:
            gc.enable()


# How much of an AWS error code an error repeats (its message: MAX_QUOTED); the code also names
# our own, "AWS_<CODE>", kept to letters and digits.
MAX_CODE_TEXT = 64


def environment_secrets(env: Mapping[str, str]) -> list[str | None]:
    return [env.get(name) for name in SECRET_ENV]


def chain_secrets(session: Any) -> list[str | None]:
    """The secret key and session token the credential chain of ``session`` resolved (from
    files, IMDS, a container endpoint, a process...) when it made a client. Credentials that
    would have to be fetched or refreshed first give none: an error path must not call AWS."""
    if session is None:  # no client was made: asking would walk the chain again
        return []
    credentials = session.get_credentials()  # what client() resolved, kept by the session
    if credentials is None:
        return []
    refresh_needed = getattr(credentials, "refresh_needed", None)
    if refresh_needed is not None and refresh_needed():
        return []
    frozen = credentials.get_frozen_credentials()
    return [frozen.secret_key, frozen.token]


def assumed_secrets(credentials: AwsCredentials | None) -> list[str | None]:
    if credentials is None:
        return []
    return [credentials.secret_access_key, credentials.session_token]


class BotoEcrApi:
    """``EcrApi`` over botocore, one client per (service, region, FIPS, dual-stack, identity)."""

    def __init__(self, env: Mapping[str, str], timeout: float = 10.0) -> None:
        self._env = env
        self._timeout = timeout
        self._clients: dict[tuple[str, str, bool, bool, str], Any] = {}
        self._chain: Any = None  # the session of the node's clients, once one was made

    def _client(self, registry: EcrRegistry, credentials: AwsCredentials | None) -> Any:
        key = (registry.api, registry.region, registry.fips, registry.dualstack,
               credentials.access_key_id if credentials else "")
        if key not in self._clients:
            config = _config(self._env, self._timeout, registry.region, fips=registry.fips,
                             dualstack=registry.dualstack)
            session = _session(self._env, credentials)
            self._clients[key] = session.create_client(registry.api, config=config)
            if credentials is None:
                self._chain = session
        return self._clients[key]

    def _secrets(self, credentials: AwsCredentials | None) -> list[str | None]:
        if credentials is not None:
            return [*environment_secrets(self._env), *assumed_secrets(credentials)]
        return [*environment_secrets(self._env), *chain_secrets(self._chain)]

    def get_authorization_token(self, registry: EcrRegistry,
                                credentials: AwsCredentials | None = None) -> AuthorizationData:
        what = f"{registry.api}:GetAuthorizationToken for {registry.describe()}"

        def call() -> Any:
            client = self._client(registry, credentials)
            if registry.public:
                return client.get_authorization_token()
            return client.get_authorization_token(registryIds=[registry.account])

        reply = call_aws(what, call,
                         lambda code: _client_error_hint(code, registry, credentials is not None),
                         lambda: self._secrets(credentials))
        if registry.public:
            items = [reply["authorizationData"]] if reply.get("authorizationData") else []
        else:
            items = reply.get("authorizationData") or []
        if not items or not items[0].get("authorizationToken"):
            raise AwsError(f"{what} returned no authorization data",
                           hint="check that the registry id is right", code="AWS_EMPTY")
        item = items[0]
        expires = item.get("expiresAt")
        headers = reply.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return AuthorizationData(
            token=item["authorizationToken"],
            expires_at=expires.timestamp() if expires is not None else None,
            server_time=_http_date(headers.get("date")),
        )


class BotoStsApi:
    """``StsApi`` over botocore: the regional STS endpoint of the registry's region (so a China or
    GovCloud registry is reached through its own partition), the standard retries."""

    def __init__(self, env: Mapping[str, str], timeout: float = 10.0) -> None:
        self._env = env
        self._timeout = timeout
        self._clients: dict[str, Any] = {}
        self._chain: Any = None  # the session of the node's clients, once one was made

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            config = _config(self._env, self._timeout, region)
            session = _session(self._env, None)
            self._clients[region] = session.create_client("sts", config=config)
            self._chain = session
        return self._clients[region]

    def _secrets(self, *more: str) -> list[str | None]:
        return [*environment_secrets(self._env), *chain_secrets(self._chain), *more]

    def assume_role(self, role_arn: str, session_name: str, external_id: str | None,
                    region: str) -> AwsCredentials:
        kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name}
        if external_id:
            kwargs["ExternalId"] = external_id
        what = f"sts:AssumeRole of {role_arn}"
        reply = call_aws(what, lambda: self._client(region).assume_role(**kwargs),
                         lambda code: _sts_hint(code, role_arn, "the node's AWS identity"),
                         lambda: self._secrets(external_id or ""))
        return _credentials(reply, what)

    def assume_role_with_web_identity(self, role_arn: str, session_name: str, token: str,
                                      region: str) -> AwsCredentials:
        what = f"sts:AssumeRoleWithWebIdentity of {role_arn}"
        reply = call_aws(
            what,
            lambda: self._client(region).assume_role_with_web_identity(
                RoleArn=role_arn, RoleSessionName=session_name, WebIdentityToken=token),
            lambda code: _sts_hint(code, role_arn, "the pod's service account"),
            lambda: self._secrets(token))
        return _credentials(reply, what)


def _credentials(reply: Any, what: str) -> AwsCredentials:
    c = reply.get("Credentials") or {}
    if not c.get("AccessKeyId") or not c.get("SecretAccessKey"):
        raise AwsError(f"{what} returned no credentials", hint="check AWS_ENDPOINT_URL_STS and "
                       "any proxy", code="AWS_EMPTY")
    expiration = c.get("Expiration")
    return AwsCredentials(c["AccessKeyId"], c["SecretAccessKey"], c.get("SessionToken", ""),
                          expiration.timestamp() if expiration is not None else None)


def _sts_hint(code: str, role_arn: str, who: str) -> str:
    if code in ("AccessDenied", "AccessDeniedException"):
        return (f"the role's trust policy must allow {who} to assume {role_arn} (and the "
                "external id must match, if the policy requires one)")
    if code in ("InvalidIdentityToken", "IDPRejectedClaim", "ExpiredTokenException"):
        return ("the cluster's OIDC provider must be registered in IAM and the token's audience "
                "(tokenAttributes.serviceAccountTokenAudience) accepted by the role")
    if code in THROTTLING_CODES:
        return ("STS is throttling; it was retried: try again shortly (for a few seconds "
                "ecrcred makes no new call for this registry)")
    return "run with --debug for details"


def _client_error_hint(code: str, registry: EcrRegistry, assumed: bool = False) -> str:
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        action = ("ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken"
                  if registry.public else "ecr:GetAuthorizationToken")
        # Asked as a role (a rule's roleArn, a pod's role): the role needs it, not the node.
        who = ("the role assumed for this registry (the rule's roleArn or the pod's role)"
               if assumed else "the node's AWS identity")
        return f"allow {action} for {who}"
    if code in ("UnrecognizedClientException", "InvalidSignatureException",
                "ExpiredTokenException", "InvalidClientTokenId"):
        return "the node's AWS credentials are invalid or expired; check the credential chain"
    if code in THROTTLING_CODES:
        return ("the API is throttling; it was retried: try again shortly (for a few seconds "
                "ecrcred makes no new call for this registry)")
    if code == "InvalidParameterException":
        return f"check that account {registry.account} and region {registry.region} exist"
    return "run with --debug for details"


def _upper_snake(code: str) -> str:
    """``AccessDeniedException`` -> ``ACCESS_DENIED``; only ASCII letters and digits of the
    server's code count (it ends our one line, in brackets), and only so many."""
    out: list[str] = []
    for ch in code[:MAX_CODE_TEXT].removesuffix("Exception"):
        if not (ch.isascii() and ch.isalnum()):
            continue
        if ch.isupper() and out:
            out.append("_")
        out.append(ch.upper())
    return "".join(out) or "UNKNOWN"


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
