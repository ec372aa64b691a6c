"""Image references and the kubelet's glob matching of images against patterns.

Two jobs that belong together because both read an image string the way the kubelet and
containerd do:

- ``parse_reference`` normalizes a reference as containerd and the kubelet do (``pause:3.9`` is
  ``docker.io/library/pause:3.9``) and splits it into host, repository, tag and digest.
- ``glob_match`` is the kubelet's ``URLsMatchStr``: the rule used for ``matchImages`` and for auth
  keys in a response. Host parts are matched one by one with Go's ``filepath.Match``, ports must
  be equal strings, and the path is a plain prefix (so ``*`` in a path is literal).

Standard library only: this is on the cache-hit path, where only ``registry_host`` is used
unless a config has rules. ``re`` is imported by the functions that match, not by the module:
its import (with ``enum``'s) costs a cache hit more instructions than the rest of ecrcred.
"""

from __future__ import annotations

from ecrcred._record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    import re

DOCKER_HUB = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"{_COMPONENT}(?:/{_COMPONENT})*"  # compiled on first use, not at import
# What Go's url.Parse accepts in a host: unreserved, sub-delims, ':', brackets, '%' escapes.
_GO_HOST_CHARS = r"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]<>\"%]*"


class ImageRef(Record):
    host: str  # "host[:port]", as it appears in auth keys
    repository: str  # path without host, tag or digest
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """``host/repository``: the form the kubelet sends in a request."""
        return f"{self.host}/{self.repository}"

    @property
    def stored(self) -> str:
        """The name containerd stores the image under (its ``ParseDockerRef``): ``name:tag``,
        or ``name@digest`` when there is a digest, a tag beside a digest being dropped. Images
        are found, pinned and imported under this name."""
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def registry_host(image: str) -> str:
    """The part of an image before the first ``/``: the kubelet's registry cache key."""
    return image.split("/", 1)[0]


def parse_reference(reference: str) -> ImageRef:
    """Split and normalize an image reference; ValueError if it cannot be one."""
    import re  # kept off the cache-hit path (see the module doc)

    ref = reference.strip()
    if not ref or any(c.isspace() for c in ref) or ref.startswith("/") or ref.endswith("/"):
        raise ValueError(f"invalid image reference {reference!r}")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not re.fullmatch(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}", digest):
            raise ValueError(f"invalid digest in image reference {reference!r}")
    first, sep, rest = ref.partition("/")
    # distribution/reference's splitDockerDomain: a first component is a host if it has a dot,
    # a colon or an upper-case letter, or is "localhost"; index.docker.io is docker.io.
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        host, path = first, rest
        if host == "index.docker.io":
            host = DOCKER_HUB
    else:
        host, path = DOCKER_HUB, ref
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
            raise ValueError(f"invalid tag in image reference {reference!r}")
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not re.fullmatch(_REPOSITORY, path):
        raise ValueError(f"invalid repository name in image reference {reference!r}")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(host, path, tag, digest)


class _SchemelessURL(Record):
    host_parts: tuple[str, ...]
    port: str
    path: str


# A rule set asks about one image once per pattern: both parses are kept, up to _MEMO_SIZE
# each. Plain dicts rather than functools.lru_cache, whose import (functools, collections)
# would be on every cache hit through this module.
_MEMO_SIZE = 256
_splits: dict[str, _SchemelessURL | None] = {}
_regexes: dict[str, re.Pattern[str] | None] = {}


def _split(text: str) -> _SchemelessURL | None:
    """What Go's url.Parse("https://" + text) gives the kubelet, reduced to what it compares."""
    if text in _splits:
        return _splits[text]
    found = _parse_url(text)
    if len(_splits) < _MEMO_SIZE:
        _splits[text] = found
    return found


def _parse_url(text: str) -> _SchemelessURL | None:
    import re  # kept off the cache-hit path (see the module doc)

    # url.Parse cuts the fragment, then the query, before it looks for the authority's end, so
    # in "a.io?x/y" the "/y" is query, not path.
    text = text.split("#", 1)[0].split("?", 1)[0]
    authority, slash, rest = text.partition("/")
    path = slash + rest
    if "@" in authority:  # userinfo is parsed off by url.Parse and not compared
        authority = authority.rsplit("@", 1)[1]
    if not re.fullmatch(_GO_HOST_CHARS, authority):
        return None  # url.Parse: "invalid character in host name"
    host, port = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        after = authority[end + 1 :]
        if after:
            if not after.startswith(":"):
                return None
            # net.SplitHostPort drops the brackets only when there is a port; without one the
            # kubelet compares "[::1]" itself (which, as a glob, is a character class).
            host, port = authority[1:end], after[1:]
    elif ":" in authority:
        host, port = authority.rsplit(":", 1)
    if port and not port.isdigit():
        return None  # url.Parse: invalid port
    return _SchemelessURL(tuple(host.split(".")), port, path)


def parses_as_url(pattern: str) -> bool:
    """Whether the kubelet can parse ``pattern`` (after ``https://``) at all."""
    return _split(pattern) is not None


def _go_match_regex(pattern: str) -> re.Pattern[str] | None:
    """``_go_regex``, kept per pattern (see ``_MEMO_SIZE``)."""
    if pattern in _regexes:
        return _regexes[pattern]
    found = _go_regex(pattern)
    if len(_regexes) < _MEMO_SIZE:
        _regexes[pattern] = found
    return found


def _go_regex(pattern: str) -> re.Pattern[str] | None:  # noqa: PLR0915 - a scanner
    """Translate a Go filepath.Match pattern to a regex; None if Go would say ErrBadPattern."""
    import re  # kept off the cache-hit path (see the module doc)

    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                return None
            out.append(re.escape(pattern[i]))
        elif c == "[":
            i += 1
            negate = i < n and pattern[i] == "^"
            if negate:
                i += 1
            items = []
            first = True
            while True:
                if i >= n:
                    return None
                if pattern[i] == "]" and not first:
                    break
                first = False
                lo = pattern[i]
                if lo == "\\":
                    i += 1
                    if i >= n:
                        return None
                    lo = pattern[i]
                elif lo in "-]":
                    return None
                i += 1
                hi = lo
                if i < n and pattern[i] == "-":
                    i += 1
                    if i >= n:
                        return None
                    hi = pattern[i]
                    if hi == "\\":
                        i += 1
                        if i >= n:
                            return None
                        hi = pattern[i]
                    elif hi in "-]":
                        return None
                    i += 1
                if lo <= hi:  # a reversed range is valid in Go and matches nothing
                    items.append(re.escape(lo) if lo == hi
                                 else f"{re.escape(lo)}-{re.escape(hi)}")
            if items:
                out.append(f"[{'^' if negate else ''}{''.join(items)}]")
            else:  # only reversed ranges: nothing matches, or anything when negated
                out.append("." if negate else "(?!)")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: str, image: str) -> bool:
    """True when the kubelet would say ``pattern`` matches ``image`` (matchImages, auth keys).

    A pattern or image that does not parse matches nothing, as in the kubelet.
    """
    glob = _split(pattern)
    target = _split(image)
    if glob is None or target is None:
        return False
    if glob.port != target.port or len(glob.host_parts) != len(target.host_parts):
        return False
    if not target.path.startswith(glob.path):
        return False
    for glob_part, target_part in zip(glob.host_parts, target.host_parts, strict=True):
        regex = _go_match_regex(glob_part)
        if regex is None or not regex.fullmatch(target_part):
            return False
    return True


def glob_specificity(pattern: str) -> tuple[int, int, int]:
    """How specific a (matching) pattern is, for "the most specific rule wins": a host without
    wildcards first, then more literal characters in the host, then a longer path prefix."""
    host, _, path = pattern.partition("/")
    literal = sum(1 for c in host if c not in "*?[]\\")
    exact = int(literal == len(host))
    return exact, literal, len(path.rstrip("/"))


def glob_host_match(pattern: str, image: str) -> bool:
    """Whether ``pattern``'s host and port (its path ignored) match the image's registry host."""
    return glob_match(pattern.split("/", 1)[0], image.split("/", 1)[0])


def normalize_auth_key(key: str) -> str:
    """An auth key as the kubelet reads it: ``https://`` and a leading ``/v1/`` or ``/v2/`` gone."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    host, slash, path = key.partition("/")
    if slash:
        for version in ("v1/", "v2/"):
            if path.startswith(version):  # only with the slash, as keyring.go does
                path = path[len(version) :]
                break
        key = f"{host}/{path}" if path else host
    return key
