"""The one exception tree of ecrcred, and the exit codes the CLI maps it to.

Every error a user can meet is an ``EcrcredError``: it carries a short ``code`` (stable, for
searching logs and docs), a message that names the object that failed, and a ``hint`` that says
what to do next. Messages never contain a secret: the kubelet logs a plugin's whole stderr.

::

    EcrcredError                       exit 1 unless a subclass says otherwise
    ├── UsageError                     exit 2  bad flags or arguments
    ├── RequestError                   exit 3  the CredentialProviderRequest on stdin is unusable
    ├── ConfigError                    exit 4  a config file or setting is invalid
    │   ├── ConfigMissing                      a config file that was named does not exist
    │   └── ArchiveError                       an image archive (--archive) is unusable
    ├── DeadlineExceeded               exit 5  our own deadline, well inside the kubelet's kill
    ├── CredentialError                exit 1  no credentials could be produced for an image
    │   ├── NoSourceError                      nothing knows this registry
    │   ├── SourceError                        a source was asked and failed
    │   │   ├── AwsError                       an AWS API call failed (ECR, ECR Public, STS)
    │   │   │   ├── AwsThrottled               AWS throttled it, past the SDK's retries
    │   │   │   └── ThrottleCoolDown           not called: it was throttled seconds ago
    │   │   ├── TokenDecodeError               the registry token is not what AWS documents
    │   │   ├── SecretFileError                a password file or variable is missing/unreadable
    │   │   ├── DockerConfigError              a docker config file exists but is unusable
    │   │   ├── HelperNotInstalled             docker-credential-<name> is not on PATH
    │   │   └── HelperFailed                   the helper failed, timed out or answered garbage
    │   └── IdentityDenied                     a pod identity was required and none applied
    ├── RuntimeServiceError            exit 6  the container runtime (CRI) failed or is unreachable
    │   └── PullError                  exit 7  the runtime could not pull an image
    ├── AuthFileError                  exit 73 an auth file for another runtime cannot be written
    │   └── UnsafeAuthFile                     its place is one another user could redirect
    └── OutputError                    exit 74 stdout is closed, full or its reader went away

Library code raises these. ``ecrcred.cli.main`` is the one place where they become a stderr line
and an exit code. A few others catch them, each to turn an error into something a user reads
while the command goes on, never to hide one:

- ``doctor`` (``doctor/__init__.py``, ``doctor/credentials.py``, ``doctor/runtime.py``): every
  failure it meets is a finding (``fail`` with the error's message and hint), the point of doctor;
- ``sandbox.SandboxKeeper``: a pull refused or a runtime unreachable is classified and retried,
  with an archive a failed pull is logged and the image imported instead, and under
  ``--watch`` a failed pass is reported and the watch goes on;
- ``fetch.get_or_fetch``: a ``SourceError`` falls back to a still valid cached token;
- ``authfile.AuthFileKeeper.watch`` (``write-auth-file --watch``): a pass that failed for a reason
  that may pass (credentials, our deadline, a full disk) is reported and retried, the last file
  left in place; a refused destination or a bad config ends the watch;
- the ``pull-sandbox`` report and ``doctor``'s token cache: a lost stdout or an unusable cache
  is warned about once and the command goes on without it.

Exit 70 is no ``EcrcredError``: it is the CLI's answer to any other exception, a bug.
``WiringError`` names one kind of bug (collaborators put together wrongly) so it ends there too,
never as a user's "bad configuration". 73, 74 and 70 are sysexits' EX_CANTCREAT, EX_IOERR and
EX_SOFTWARE.
"""

from __future__ import annotations


class EcrcredError(Exception):
    """Base of every error ecrcred reports to a user."""

    code = "ECRCRED_ERROR"
    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def one_line(self) -> str:
        """The error as the single stderr line the CLI prints (no newlines, no secrets)."""
        text = self.message
        if self.hint:
            text = f"{text}; {self.hint}"
        return " ".join(f"{text} [{self.code}]".split())


class UsageError(EcrcredError):
    code = "USAGE"
    exit_code = 2


class RequestError(EcrcredError):
    code = "BAD_REQUEST"
    exit_code = 3


class ConfigError(EcrcredError):
    code = "BAD_CONFIG"
    exit_code = 4


class ConfigMissing(ConfigError):
    """Same code and exit as ConfigError; a type of its own so a caller that can go on without
    the file (``doctor`` on a node without containerd) tells it from a broken one."""


class ArchiveError(ConfigError):
    """The image archive ``pull-sandbox --archive`` names cannot be used: unreadable, not an
    image archive, hostile (links, names outside it, sizes), content that does not match its
    digests, or without the image asked for. A setting that names an unusable file: exit 4."""

    code = "BAD_ARCHIVE"


class DeadlineExceeded(EcrcredError):
    code = "DEADLINE"
    exit_code = 5


class CredentialError(EcrcredError):
    code = "NO_CREDENTIALS"


class NoSourceError(CredentialError):
    code = "NO_SOURCE"


class SourceError(CredentialError):
    code = "SOURCE_FAILED"


class AwsError(SourceError):
    code = "AWS_ERROR"


class AwsThrottled(AwsError):
    """AWS refused the call as over its rate limit, and the SDK's retries did not get through.

    A type of its own because the token cache reacts to it: it holds further fetches for the
    same key back for a few seconds (``fetch.get_or_fetch``). The code stays the one the AWS
    error code gives (``AWS_THROTTLING``, ``AWS_TOO_MANY_REQUESTS``)."""


class ThrottleCoolDown(AwsError):
    """No call was made: one for the same registry and identity was throttled seconds ago.

    ``retry_after`` is how many seconds from now the hold ends, for a caller that has time to
    wait it out (``pull-sandbox``); the kubelet simply retries the pull after its back-off."""

    code = "AWS_THROTTLED_RECENTLY"

    def __init__(self, message: str, *, retry_after: float, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class TokenDecodeError(SourceError):
    code = "BAD_TOKEN"


class SecretFileError(SourceError):
    code = "SECRET_UNREADABLE"


class DockerConfigError(SourceError):
    code = "DOCKER_CONFIG"


class HelperNotInstalled(SourceError):
    code = "HELPER_NOT_INSTALLED"


class HelperFailed(SourceError):
    code = "HELPER_FAILED"


class IdentityDenied(CredentialError):
    code = "IDENTITY_DENIED"


class RuntimeServiceError(EcrcredError):
    code = "RUNTIME"
    exit_code = 6


class PullError(RuntimeServiceError):
    """``detail`` is the runtime's own text, kept apart from our message (which names socket
    paths and images) so that reading it for status words cannot be fooled by either.
    ``status`` is the gRPC status code's name the runtime answered with (``NOT_FOUND``,
    ``FAILED_PRECONDITION``; empty when unknown): what it says happened, in no one's words."""

    code = "PULL_FAILED"
    exit_code = 7

    def __init__(self, message: str, *, detail: str = "", hint: str = "",
                 code: str | None = None, status: str = "") -> None:
        super().__init__(message, hint=hint, code=code)
        self.detail = detail
        self.status = status


class AuthFileError(EcrcredError):
    """``write-auth-file`` could not write the file another runtime reads (CRI-O's
    ``pause_image_auth_file``, cri-dockerd's docker config): the disk, a permission. The
    credentials were resolved, so this is no credential error; 73 is sysexits' EX_CANTCREAT."""

    code = "AUTH_FILE"
    exit_code = 73


class UnsafeAuthFile(AuthFileError):
    """The destination is refused, not failed: its directory is one another user could write
    to (or a symlink), or a symlink or something other than a file sits at its name. Retrying
    cannot help, so ``write-auth-file --watch`` stops on it rather than retrying."""

    code = "AUTH_FILE_UNSAFE"


class OutputError(EcrcredError):
    """What we had to say could not be written on stdout: it is closed, the disk is full, or
    the reader went away (a broken pipe). The environment's fault, not ours: the answer was
    ready, so this is no internal error (70), and no credential error (1) either."""

    code = "STDOUT"
    exit_code = 74


class WiringError(RuntimeError):
    """ecrcred's own code put its collaborators together wrongly (a source that needs an STS
    client was built without one). A bug, not a user's error: deliberately outside
    ``EcrcredError``, so that the CLI's catch-all ends it as exit 70 [INTERNAL]."""


EXIT_OK = 0
EXIT_INTERNAL = 70  # sysexits EX_SOFTWARE: a bug in ecrcred, reported with a hint to use --debug
