"""The ECR credential source: tokens from ``ecr:GetAuthorizationToken`` and ECR Public's.

Two layers:

- ``EcrApi`` is the one-method seam to AWS (as in cloud-provider-aws's plugin). ``BotoEcrApi``
  implements it with boto3, imported only when a token must really be fetched, so the cache-hit
  path never pays for botocore. It calls the API in the registry's own region, with
  ``registryIds`` for the registry's account, through the FIPS or dual-stack endpoint when the
  host is one, and ECR Public through ``ecr-public`` in us-east-1. It honours the standard AWS
  environment: credential chain, retry mode and attempts, ``AWS_ENDPOINT_URL_ECR`` and
  ``AWS_ENDPOINT_URL_ECR_PUBLIC``; it never needs HOME.
- ``EcrSource`` turns an image into a cache key and a fetch: decoding the token and laying its
  expiry onto our clock (``tokens.token_expiry``).
"""

from __future__ import annotations

from ecrcred._record import Record
from ecrcred.cache import CacheKey, sha256_hex
from ecrcred.ecrhost import EcrRegistry, parse_ecr_host
from ecrcred.errors import AwsError, TokenDecodeError
from ecrcred.imageref import registry_host
from ecrcred.sources import Lookup
from ecrcred.tokens import Token, token_expiry

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ecrcred.seams import Clock, EcrApi, Logger

# The parts of the environment that decide which AWS principal botocore's credential chain will
# find, and which endpoint it will talk to. Their digest partitions the token cache, so that a
# token fetched as one identity (or from a stand-in endpoint) is never served to another, while a
# cache hit needs no credential resolution at all.
IDENTITY_ENV = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_ECR_PUBLIC",
    "AWS_ENDPOINT_URL_STS",
)


class AuthorizationData(Record):
    """What the token API returned: base64 ``user:password``, expiry and the server's clock."""

    token: str
    expires_at: float | None
    server_time: float | None

    def __repr__(self) -> str:
        return f"AuthorizationData(token=<redacted>, expires_at={self.expires_at!r})"


def identity_digest(env: Mapping[str, str], role_arn: str | None = None) -> str:
    """A non-secret digest of who is asking, from the environment alone (no botocore)."""
    parts = [f"{name}={env.get(name, '')}" for name in IDENTITY_ENV]
    parts.append(f"role={role_arn or ''}")
    return sha256_hex("\n".join(parts).encode())[:16]


class EcrSource:
    """Credentials for ECR and ECR Public hosts, recognized from the image's host alone."""

    name = "ecr"

    def __init__(self, api: EcrApi, env: Mapping[str, str], clock: Clock, log: Logger) -> None:
        self._api = api
        self._env = env
        self._clock = clock
        self._log = log

    def lookup(self, image: str) -> Lookup | None:
        registry = parse_ecr_host(registry_host(image))
        if registry is None:
            return None
        return self.lookup_registry(registry, auth_key=registry.host)

    def lookup_registry(self, registry: EcrRegistry, auth_key: str) -> Lookup:
        key = CacheKey(
            registry=f"{registry.api}:{registry.host}",
            identity=identity_digest(self._env),
        )
        return Lookup(
            auth_key=auth_key,
            cache_key=key,
            fetch=lambda: self.fetch(registry),
            describe=describe(registry),
        )

    def fetch(self, registry: EcrRegistry) -> Token:
        fetched_at = self._clock.time()
        data = self._api.get_authorization_token(registry)
        username, password = decode_token(data.token, registry)
        expires_at, trusted = token_expiry(fetched_at, data.expires_at, data.server_time)
        if not trusted:
            self._log.warning(
                f"{registry.api} returned a token for {registry.host} whose expiry is missing or "
                "already past by the registry's own clock; trusting it for one hour only, so "
                "it is refreshed after 30 minutes (moto does this; on real AWS check the node's "
                "clock)"
            )
        self._log.add_secret(password)
        return Token(username, password, expires_at, fetched_at)


def describe(registry: EcrRegistry) -> str:
    if registry.public:
        return f"ECR Public registry {registry.host}"
    variant = " ".join(v for v, on in (("FIPS", registry.fips), ("dual-stack", registry.dualstack))
                       if on)
    return (f"ECR registry {registry.host} (account {registry.account}, region "
            f"{registry.region}{', ' + variant if variant else ''})")


def decode_token(token: str, registry: EcrRegistry) -> tuple[str, str]:
    """Split base64 ``user:password`` at the first colon; TokenDecodeError if it is not that."""
    import base64  # only on a cache miss
    import binascii

    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = ""
    username, sep, password = decoded.partition(":")
    if not sep or not username or not password:
        raise TokenDecodeError(
            f"{registry.api} returned an authorization token for {registry.host} that is not "
            "base64 of user:password",
            hint="this is not a token ECR issues; check AWS_ENDPOINT_URL_ECR and any proxy",
        )
    return username, password


class BotoEcrApi:
    """``EcrApi`` over boto3, one client per (service, region, FIPS, dual-stack)."""

    def __init__(self, env: Mapping[str, str], timeout: float = 10.0) -> None:
        self._env = env
        self._timeout = timeout
        self._clients: dict[tuple[str, str, bool, bool], Any] = {}

    def _client(self, registry: EcrRegistry) -> Any:
        key = (registry.api, registry.region, registry.fips, registry.dualstack)
        if key not in self._clients:
            import boto3.session
            from botocore.config import Config

            retries: dict[str, Any] = {}
            if "AWS_RETRY_MODE" not in self._env and "AWS_MAX_ATTEMPTS" not in self._env:
                retries = {"mode": "standard", "total_max_attempts": 4}
            config = Config(  # type: ignore[call-arg]  # user_agent_appid: botocore>=1.32
                region_name=registry.region,
                connect_timeout=min(5.0, self._timeout),
                read_timeout=self._timeout,
                retries=retries or None,  # type: ignore[arg-type]
                use_fips_endpoint=registry.fips,
                use_dualstack_endpoint=registry.dualstack,
                user_agent_appid="ecrcred",
            )
            session = boto3.session.Session()
            self._clients[key] = session.client(registry.api, config=config)  # type: ignore[call-overload]
        return self._clients[key]

    def get_authorization_token(self, registry: EcrRegistry) -> AuthorizationData:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        what = f"{registry.api}:GetAuthorizationToken for {describe(registry)}"
        try:
            client = self._client(registry)
            if registry.public:
                reply = client.get_authorization_token()
                items = [reply["authorizationData"]] if reply.get("authorizationData") else []
            else:
                reply = client.get_authorization_token(registryIds=[registry.account])
                items = reply.get("authorizationData") or []
        except NoCredentialsError:
            raise AwsError(
                f"{what} failed: no AWS credentials were found",
                hint="give the node an instance role, or set AWS_* credentials in the kubelet "
                "provider's env (HOME is not used)",
                code="AWS_NO_CREDENTIALS",
            ) from None
        except EndpointConnectionError as exc:
            raise AwsError(
                f"{what} failed: cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}",
                hint="check the node's network path to the ECR API (VPC endpoint, proxy, DNS)",
                code="AWS_UNREACHABLE",
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            raise AwsError(
                f"{what} failed: {code}: {error.get('Message', '')}".rstrip(": "),
                hint=_client_error_hint(code, registry),
                code=f"AWS_{_upper_snake(code)}",
            ) from None
        except BotoCoreError as exc:
            raise AwsError(f"{what} failed: {exc}", hint="retry; if it persists run ecrcred "
                           "with --debug", code="AWS_CLIENT") from None
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


def _client_error_hint(code: str, registry: EcrRegistry) -> str:
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        action = ("ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken"
                  if registry.public else "ecr:GetAuthorizationToken")
        return f"allow {action} for the node's AWS identity"
    if code in ("UnrecognizedClientException", "InvalidSignatureException",
                "ExpiredTokenException", "InvalidClientTokenId"):
        return "the node's AWS credentials are invalid or expired; check the credential chain"
    if code in ("ThrottlingException", "TooManyRequestsException"):
        return "the API is throttling; it was retried, try again shortly"
    if code == "InvalidParameterException":
        return f"check that account {registry.account} and region {registry.region} exist"
    return "run with --debug for details"


def _upper_snake(code: str) -> str:
    out = []
    for i, ch in enumerate(code.removesuffix("Exception")):
        if ch.isupper() and i:
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
