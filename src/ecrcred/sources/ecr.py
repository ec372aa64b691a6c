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

import os

from ecrcred._record import Record
from ecrcred.config.rules import DEFAULT_POD_IDENTITY, EcrOptions
from ecrcred.ecrhost import parse_ecr_host, private_host
from ecrcred.errors import (
    ConfigError,
    CredentialError,
    IdentityDenied,
    TokenDecodeError,
    WiringError,
)
from ecrcred.files import sha256_hex
from ecrcred.imageref import registry_host
from ecrcred.log import SECRET_ENV
from ecrcred.records import CacheKey, Lookup
from ecrcred.tokens import Token, split_basic_auth, token_expiry

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ecrcred.config.rules import PodIdentityPolicy
    from ecrcred.ecrhost import EcrRegistry
    from ecrcred.records import Pod
    from ecrcred.seams import Clock, EcrApi, Logger, StsApi
    from ecrcred.sources.aws import AwsCredentials

# What decides which AWS principal botocore's credential chain finds, and which server answers
# as the endpoint: the environment variables that its credential providers (``credentials.py``:
# environment, assume-role and web-identity profiles, SSO, ``credential_process``, shared files,
# the EC2 credentials file, boto2 config, container, IMDS) and its endpoint resolution
# (``configprovider.py``) read, and the files they read, found as botocore finds them. Their
# digest partitions the token cache, so a token fetched as one identity (or from a stand-in
# endpoint) is never served to another, while a cache hit resolves no credentials: the files are
# only stat()ed (an edited or swapped file is another identity), never read. Left out on purpose:
# AWS_REGION and AWS_DEFAULT_REGION (every client, and the STS client the chain builds, takes the
# registry's own region), retry and timeout settings (they change when, not who), and proxies
# (a proxy relays; which certificates are believed is AWS_CA_BUNDLE / REQUESTS_CA_BUNDLE).
IDENTITY_ENV = (
    # where the shared config and credentials files are (profiles, their keys, role_arn and
    # source_profile, credential_process, SSO, endpoint_url, ca_bundle), and which profile
    "HOME", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_LOGIN_CACHE_DIRECTORY", "AWS_CREDENTIAL_FILE", "BOTO_CONFIG",
    # keys in the environment (the secret halves: ecrcred.log.SECRET_ENV, as digests only)
    "AWS_ACCESS_KEY_ID",
    # a web identity from the environment
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
    # container credentials (ECS, EKS Pod Identity)
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    # the instance role, and which metadata service gives it
    "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_IMDS_USE_IPV6",
    # which server answers as ECR or STS (with every AWS_ENDPOINT_URL* variable, below)
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_STS_REGIONAL_ENDPOINTS", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "AWS_DATA_PATH",
)
# AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, for every service: ECR, ECR Public and STS,
# and those the chain itself calls (SSO, SSO OIDC, sign-in).
ENDPOINT_ENV_PREFIX = "AWS_ENDPOINT_URL"
ROLE_ENV = "AWS_ECR_ROLE_ARN"


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
    """A non-secret digest of who is asking, from the environment, a stat() of the credential
    files it selects and the principal key (no botocore, no file read)."""
    # repr(): an unset variable is not an empty one (botocore tells them apart), and a value
    # holding a newline cannot pass for another line
    parts = [f"{name}={env.get(name)!r}" for name in IDENTITY_ENV if name != "HOME"]
    # HOME as botocore uses it, through "~": unset means the user's own home from the password
    # database, so a kubelet under systemd (no HOME) and the agent's container (HOME=/root)
    # running as root are one identity, as they read the same files; any other HOME is another.
    parts.append(f"home={_expand_user('~', env)!r}")
    parts += [f"{name}={env[name]!r}" for name in sorted(env)
              if name.startswith(ENDPOINT_ENV_PREFIX)]
    parts += [f"{name}#{_secret_digest(env.get(name))}" for name in SECRET_ENV]
    parts += [f"file {path!r} {_file_fingerprint(path)}" for path in credential_files(env)]
    parts.append(f"principal={principal!r}")
    # surrogatepass: a token's claims may hold lone surrogates ("\\ud800" is valid JSON)
    return sha256_hex("\n".join(parts).encode("utf-8", "surrogatepass"))[:16]


def credential_files(env: Mapping[str, str]) -> list[str]:
    """The files botocore's credential chain reads under ``env``, resolved as it resolves them:
    the shared config and credentials files (``$VAR`` and ``~`` expanded), the EC2 credentials
    file (``~`` only) and the boto2 config files; absolute where the working directory allows."""
    paths = [_ini_path(env.get("AWS_CONFIG_FILE", "~/.aws/config"), env),
             _ini_path(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), env)]
    if "AWS_CREDENTIAL_FILE" in env:
        paths.append(_expand_user(env["AWS_CREDENTIAL_FILE"], env))
    boto = [env["BOTO_CONFIG"]] if "BOTO_CONFIG" in env else ["/etc/boto.cfg", "~/.boto"]
    paths += [_ini_path(path, env) for path in boto]
    return [_absolute(path) for path in paths]


def _ini_path(path: str, env: Mapping[str, str]) -> str:
    # botocore's configloader: os.path.expandvars, then os.path.expanduser
    return _expand_user(_expand_vars(path, env), env)


def _expand_vars(path: str, env: Mapping[str, str]) -> str:
    """``os.path.expandvars`` against ``env`` (which is ``os.environ`` when botocore reads it,
    but the digest must be a function of what it is given)."""
    if "$" not in path:
        return path
    import re  # only for a path holding "$": the hit path otherwise never imports re

    def value(match: re.Match[str]) -> str:
        name = match.group(1).removeprefix("{").removesuffix("}")
        return env.get(name, match.group(0))

    return re.sub(r"\$(\w+|\{[^}]*\})", value, path, flags=re.ASCII)


def _expand_user(path: str, env: Mapping[str, str]) -> str:
    """``os.path.expanduser`` against ``env``: HOME when it is set (even empty), else the
    password database's home of this uid, as Python does (root's kubelet without HOME reads
    /root/.aws too)."""
    if not path.startswith("~"):
        return path
    end = path.find("/", 1)
    end = len(path) if end < 0 else end
    if end == 1 and "HOME" in env:
        home = env["HOME"]
    else:
        found = _home_of(path[1:end])
        if found is None:
            return path
        home = found
    return (home.rstrip("/") + path[end:]) or "/"


_HOMES: dict[str, str | None] = {}  # one password-database lookup per user and process


def _home_of(user: str) -> str | None:
    """The password database's home of ``user`` ("": the user we run as), or None."""
    if user not in _HOMES:
        import pwd

        try:
            entry = pwd.getpwnam(user) if user else pwd.getpwuid(os.getuid())
        except KeyError:
            _HOMES[user] = None
        else:
            _HOMES[user] = entry.pw_dir
    return _HOMES[user]


def _absolute(path: str) -> str:
    # Joined, not normalized: "a/link/../b" is what the kernel resolves, not "a/b".
    if not path or os.path.isabs(path):
        return path
    try:
        return os.path.join(os.getcwd(), path)
    except OSError:  # the working directory was removed: botocore cannot resolve it either
        return path


def _file_fingerprint(path: str) -> str:
    """Which file is there, cheaply: device, inode, size and mtime, or why there is none."""
    if not path:
        return "none"
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"absent {exc.errno}"
    except ValueError:  # a NUL byte in the path
        return "invalid"
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _secret_digest(value: str | None) -> str:
    if value is None:
        return "unset"
    return sha256_hex(value.encode("utf-8", "surrogatepass"))


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
            label=registry.host,  # how the token cache's messages name it
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
                                                  o.external_id, r.region),
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
                                                                    r.region),
        )

    def _need_sts(self) -> StsApi:
        if self._sts is None:
            # A programming error, not a user's: exit 70, never "bad configuration" (4).
            raise WiringError("a role is configured but no STS client was given")
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
