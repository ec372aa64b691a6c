"""The ECR source: tokens from ``ecr:GetAuthorizationToken`` and ECR Public's, as the right AWS
identity.

It turns an image into a registry (from the host name, or from a rule's account and region for
a custom domain or proxy in front of ECR), picks *who* asks (the node's own credential chain, a
role the node assumes first, or the pod's role through its service-account token), and builds
the cache key from both, so a token is only ever served to the identity it was issued to. The
AWS calls themselves are behind the ``EcrApi`` and ``StsApi`` seams (``sources.aws``).

Per-pod identity (KEP-4412), when the request carries a service-account token: the role comes
from the first non-empty annotation in ``podIdentity.roleAnnotations``, else
``podIdentity.roleArn``, else ``AWS_ECR_ROLE_ARN`` (the reference plugin's variable); with none,
``podIdentity.fallback`` decides: ``node`` uses the node's identity, ``deny`` refuses. Tokens for
a pod role are cached per (role, token issuer, service account): the kubelet, not the pod, mints
the token, so its subject says which service account the role was assumed for; a token whose
claims cannot be read is keyed by its digest, which shares nothing. The token itself is never
logged, stored or answered.
"""

from __future__ import annotations

from ecrcred._record import Record
from ecrcred.cache import CacheKey, sha256_hex
from ecrcred.config.rules import DEFAULT_POD_IDENTITY
from ecrcred.ecrhost import parse_ecr_host, private_host
from ecrcred.errors import ConfigError, CredentialError, IdentityDenied, TokenDecodeError
from ecrcred.imageref import registry_host
from ecrcred.sources import Lookup
from ecrcred.tokens import Token, split_basic_auth, token_expiry

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ecrcred.config.rules import PodIdentityPolicy
    from ecrcred.ecrhost import EcrRegistry
    from ecrcred.seams import Clock, EcrApi, Logger, StsApi
    from ecrcred.sources import Pod
    from ecrcred.sources.aws import AwsCredentials

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
ROLE_ENV = "AWS_ECR_ROLE_ARN"


class EcrOptions(Record):
    """A rule's ``ecr:`` options (``config.schema.EcrOptions``, compiled)."""

    region: str | None = None
    account: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    session_name: str = "ecrcred"
    fips: bool | None = None
    dualstack: bool | None = None


class Principal(Record):
    """Who asks for the token: ``key`` partitions the cache (no secret in it), ``describe`` is
    for messages, ``credentials`` gets the AWS credentials (None: the node's own chain)."""

    key: str
    describe: str
    credentials: Callable[[EcrRegistry], AwsCredentials | None]


def _node(_registry: EcrRegistry) -> None:
    return None


NODE = Principal("", "the node's AWS identity", _node)


def identity_digest(env: Mapping[str, str], principal: str = "") -> str:
    """A non-secret digest of who is asking, from the environment and the principal key alone
    (no botocore)."""
    parts = [f"{name}={env.get(name, '')}" for name in IDENTITY_ENV]
    parts.append(f"principal={principal}")
    # surrogatepass: a token's claims may hold lone surrogates ("\\ud800" is valid JSON)
    return sha256_hex("\n".join(parts).encode("utf-8", "surrogatepass"))[:16]


class EcrSource:
    """Credentials for ECR and ECR Public hosts, and for hosts a rule maps onto an ECR registry."""

    name = "ecr"

    def __init__(self, api: EcrApi, env: Mapping[str, str], clock: Clock, log: Logger, *,
                 sts: StsApi | None = None, options: EcrOptions | None = None,
                 pod_policy: PodIdentityPolicy = DEFAULT_POD_IDENTITY) -> None:
        self._api = api
        self._sts = sts
        self._env = env
        self._clock = clock
        self._log = log
        self._options = options or EcrOptions()
        self._policy = pod_policy

    def lookup(self, image: str, pod: Pod | None = None) -> Lookup | None:
        host = registry_host(image)
        registry = self.registry_for(host)
        if registry is None:
            return None
        return self.lookup_registry(registry, auth_key=host, pod=pod)

    def registry_for(self, host: str) -> EcrRegistry | None:
        """The registry whose tokens open ``host``: the host's own, with a rule's overrides."""
        o = self._options
        parsed = parse_ecr_host(host)
        if parsed is not None and parsed.public:
            return parsed
        account = o.account or (parsed.account if parsed else None)
        region = o.region or (parsed.region if parsed else None)
        if account is None or region is None:
            return None
        fips = o.fips if o.fips is not None else bool(parsed and parsed.fips)
        dualstack = o.dualstack if o.dualstack is not None else bool(parsed and parsed.dualstack)
        if parsed is not None and (account, region, fips, dualstack) == (
                parsed.account, parsed.region, parsed.fips, parsed.dualstack):
            return parsed
        try:
            target = parse_ecr_host(private_host(account, region, fips=fips, dualstack=dualstack))
        except ValueError as exc:
            raise ConfigError(f"ECR options for {host}: {exc}",
                              hint="check region, fips and dualstack in the ecrcred config",
                              ) from None
        if target is None:
            raise ConfigError(f"ECR options for {host}: no {'FIPS ' if fips else ''}ECR endpoint "
                              f"in region {region}", hint="check region and fips in the config")
        return target

    def lookup_registry(self, registry: EcrRegistry, auth_key: str,
                        pod: Pod | None = None) -> Lookup:
        principal = self.principal(pod)
        key = CacheKey(
            registry=f"{registry.api}:{registry.host}",
            identity=identity_digest(self._env, principal.key),
        )
        what = registry.describe()
        if principal is not NODE:
            what = f"{what} as {principal.describe}"
        return Lookup(
            auth_key=auth_key,
            cache_key=key,
            fetch=lambda: self.fetch(registry, principal),
            describe=what,
        )

    def principal(self, pod: Pod | None) -> Principal:
        if pod is not None:
            role = self._pod_role(pod)
            if role is not None:
                return self._web_identity(role, pod.token)
            if self._policy.fallback == "deny":
                raise IdentityDenied(
                    "the pod's service account names no ECR role (annotations "
                    f"{', '.join(self._policy.role_annotations)}) and podIdentity.fallback is deny",
                    hint="annotate the service account with a role ARN, or set podIdentity.roleArn "
                    "or fallback: node in the ecrcred config")
        o = self._options
        if o.role_arn is None:
            return NODE
        sts = self._need_sts()
        external = sha256_hex(o.external_id.encode())[:12] if o.external_id else ""
        return Principal(
            key=f"assume\0{o.role_arn}\0{external}\0{o.session_name}",
            describe=f"role {o.role_arn} (assumed by the node)",
            credentials=lambda r: sts.assume_role(o.role_arn or "", o.session_name,
                                                  o.external_id, r.region, r.partition),
        )

    def _pod_role(self, pod: Pod) -> str | None:
        for name in self._policy.role_annotations:
            value = pod.annotations.get(name, "").strip()
            if value:
                if not _is_role_arn(value):
                    raise CredentialError(
                        f"annotation {name} of the pod's service account is not an IAM role "
                        f"ARN: {value[:200]!r}",
                        hint="use arn:<partition>:iam::<account>:role/<name>", code="BAD_ROLE")
                return value
        if self._policy.role_arn:
            return self._policy.role_arn
        value = self._env.get(ROLE_ENV, "").strip()
        if value and not _is_role_arn(value):
            raise CredentialError(f"{ROLE_ENV} is not an IAM role ARN: {value[:200]!r}",
                                  hint="use arn:<partition>:iam::<account>:role/<name>",
                                  code="BAD_ROLE")
        return value or None

    def _web_identity(self, role: str, token: str) -> Principal:
        sts = self._need_sts()
        subject = token_subject(token)
        session = self._policy.session_name
        return Principal(
            key=f"web\0{role}\0{subject}",
            describe=f"role {role} for {subject_label(subject)}",
            credentials=lambda r: sts.assume_role_with_web_identity(role, session, token,
                                                                    r.region, r.partition),
        )

    def _need_sts(self) -> StsApi:
        if self._sts is None:
            raise ConfigError("a role is configured but no STS client was given",
                              hint="this is a bug in ecrcred's wiring; report it")
        return self._sts

    def fetch(self, registry: EcrRegistry, principal: Principal = NODE) -> Token:
        credentials = principal.credentials(registry)
        if credentials is not None:
            self._log.add_secret(credentials.secret_access_key)
            self._log.add_secret(credentials.session_token)
        fetched_at = self._clock.time()
        data = self._api.get_authorization_token(registry, credentials)
        username, password = decode_token(data.token, registry)
        expires_at, trusted = token_expiry(fetched_at, data.expires_at, data.server_time)
        if not trusted:
            self._log.warning(
                f"{registry.api} returned a token for {registry.host} whose expiry is missing, "
                "already past or more than 7 days away by the registry's own clock; trusting it "
                "for one hour only, so it is refreshed after 30 minutes (moto does this; on real "
                "AWS check the node's clock and any proxy)"
            )
        self._log.add_secret(password)
        return Token(username, password, expires_at, fetched_at)


# An IAM role ARN in any partition; the config schema checks roleArn fields with the same one.
ROLE_ARN_PATTERN = r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}"


def _is_role_arn(value: str) -> bool:
    import re

    return re.fullmatch(ROLE_ARN_PATTERN, value) is not None


def token_subject(token: str) -> str:
    """``iss <issuer> sub <subject>`` from a service-account JWT's claims (read, not verified:
    the kubelet minted it and hands it to us directly); a digest when they cannot be read."""
    import base64
    import json

    parts = token.split(".")
    if len(parts) == 3:  # header.payload.signature
        try:
            payload = parts[1] + "=" * (-len(parts[1]) % 4)
            claims = json.loads(base64.urlsafe_b64decode(payload))
            iss, sub = claims.get("iss"), claims.get("sub")
            if isinstance(iss, str) and isinstance(sub, str) and sub:
                return f"iss {iss} sub {sub}"
        except (ValueError, TypeError, AttributeError, RecursionError):
            pass
    return f"token-digest {sha256_hex(token.encode('utf-8', 'surrogatepass'))[:32]}"


def subject_label(subject: str) -> str:
    if subject.startswith("iss "):
        return subject.rsplit(" sub ", 1)[1]
    return "a service account whose token has no readable subject"


def decode_token(token: str, registry: EcrRegistry) -> tuple[str, str]:
    """Split base64 ``user:password`` at the first colon; TokenDecodeError if it is not that."""
    username, password = split_basic_auth(token) or ("", "")
    if not username or not password:
        raise TokenDecodeError(
            f"{registry.api} returned an authorization token for {registry.host} that is not "
            "base64 of user:password",
            hint="this is not a token ECR issues; check AWS_ENDPOINT_URL_ECR and any proxy",
        )
    return username, password
