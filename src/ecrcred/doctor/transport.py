"""doctor's HTTP and TLS transport: how a request reaches a registry as containerd's would.

``HttpClient`` implements the ``Http`` seam (``seams.py``) over the standard library's
http.client: the endpoint's CA files on top of the system's, its client certificate, its
skip_verify, and at most three redirects, dropping the Authorization header when one leaves the
host. A client certificate the server refuses under TLS 1.3 shows up only as a reset; one more
TLS 1.2 handshake names the refusal (``_certificate_refusal``).

``load_client_pair`` loads a client certificate pair the way containerd does, never prompting
for an encrypted key's passphrase. The checks that use all this live beside it, in
``registry.py``; this module judges nothing.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import NamedTuple
from urllib.parse import SplitResult, urljoin, urlsplit

from ecrcred.containerd_routes import ClientPair

MAX_BODY = 4 << 20  # containerd refuses bigger manifests too
# TLS alerts a server sends about the client's certificate (none, or one it does not trust)
CLIENT_CERT_ALERT = re.compile(
    r"ALERT_(CERTIFICATE_\w+|BAD_CERTIFICATE|UNKNOWN_CA|UNSUPPORTED_CERTIFICATE)")


class HttpReply(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class HttpClient:
    """``Http`` over http.client: the endpoint's CA files on top of the system's, as containerd
    does, its client certificate, and at most three redirects."""

    def get(self, url: str, headers: dict[str, str], *, ca: tuple[str, ...], skip_verify: bool,
            timeout: float, client: tuple[ClientPair, ...] = ()) -> HttpReply:
        import http.client

        for _ in range(4):
            parts = urlsplit(url)
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            connection: http.client.HTTPConnection
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(
                    parts.netloc, timeout=timeout,
                    context=_tls_context(ca, skip_verify, client))
            else:
                connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
            try:
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                body = response.read(MAX_BODY)
                reply = HttpReply(response.status,
                                  {k.lower(): v for k, v in response.getheaders()}, body)
            except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError) as exc:
                if parts.scheme != "https":
                    raise
                refusal = _certificate_refusal(parts, ca, skip_verify, client, timeout)
                if refusal is None:
                    raise
                raise refusal from exc
            finally:
                connection.close()
            location = reply.headers.get("location")
            if reply.status not in (301, 302, 303, 307, 308) or not location:
                return reply
            next_url = urljoin(url, location)
            if urlsplit(next_url).netloc != parts.netloc:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = next_url
        return reply


def _certificate_refusal(parts: SplitResult, ca: tuple[str, ...], skip_verify: bool,
                         client: tuple[ClientPair, ...], timeout: float) -> ssl.SSLError | None:
    """The server's alert about our client certificate, when a TLS 1.2 handshake gives one.

    Under TLS 1.3 the client's handshake ends before the server has judged its certificate; a
    server that then refuses it (Go's, as distribution and containerd use) often closes the
    connection with our request unread, and the reset swallows its alert: all we see is EOF.
    TLS 1.2 settles the client certificate inside the handshake, so one more handshake there
    names the refusal. None when it does not (another cause, or a TLS 1.3-only server)."""
    context = _tls_context(ca, skip_verify, client)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    host = parts.hostname or ""
    try:
        with (socket.create_connection((host, parts.port or 443), timeout=timeout) as raw,
              context.wrap_socket(raw, server_hostname=host)):
            return None
    except ssl.SSLError as exc:
        return exc if CLIENT_CERT_ALERT.search(str(exc)) else None
    except OSError:
        return None


def _tls_context(ca: tuple[str, ...], skip_verify: bool,
                 client: tuple[ClientPair, ...] = ()) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for path in ca:
        context.load_verify_locations(cafile=path)
    if client:
        # Go offers the first of containerd's pairs that the server's request accepts; an
        # SSLContext holds one chain per key type, so the first pair stands for all (one pair is
        # what hosts.toml files hold in practice).
        cert, key = client[0]
        context.load_cert_chain(cert, key or None, password=_no_passphrase)
    if skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class EncryptedKey(ssl.SSLError):
    """A client key needs a passphrase: raised by ``_no_passphrase`` while it loads."""

    def __str__(self) -> str:  # SSLError would show the args tuple
        return " ".join(str(a) for a in self.args)


def _no_passphrase() -> bytes:
    """The ``password`` callback of every client key we load. Without one, OpenSSL asks for
    the passphrase of an encrypted key on the terminal, and doctor hangs waiting for it;
    containerd never asks (Go's ``tls.X509KeyPair`` cannot decrypt a key: "failed to load X509
    key pair: tls: failed to parse private key", both for ``ENCRYPTED PRIVATE KEY`` and for the
    older ``Proc-Type: 4,ENCRYPTED`` form, seen on containerd 1.6.20)."""
    raise EncryptedKey("the client private key is encrypted (it needs a passphrase); "
                       "containerd cannot use an encrypted key")


def load_client_pair(pair: ClientPair) -> tuple[str, str] | None:
    """Why a client certificate pair cannot be used: (the file or files, the reason), or None.

    The ``ClientCheck`` that ``RegistryProbe`` uses by default: reads the files and loads them
    the way containerd's ``tls.X509KeyPair`` would (a pair without a key file holds the key in
    the certificate's file); an encrypted key fails at once, as in containerd, never prompting
    for its passphrase."""
    cert, key = pair
    for path in (cert, key) if key else (cert,):
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            return path, exc.strerror or type(exc).__name__
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key or None,
                                                                password=_no_passphrase)
    except EncryptedKey:
        return key or cert, ("the private key is encrypted (it needs a passphrase): containerd "
                             "cannot use an encrypted key (\"failed to load X509 key pair: tls: "
                             "failed to parse private key\"); write it unencrypted, e.g. "
                             "'openssl pkey -in KEY -out PLAIN.key', readable by root only")
    except ssl.SSLError as exc:
        said = re.sub(r" \(_ssl\.c:\d+\)$", "", tls_reason(exc))
        if key:
            return f"{cert} + {key}", f"not a PEM certificate and its private key ({said})"
        return cert, (f"not a PEM file holding both a certificate and its private key ({said}):"
                      " containerd reads a lone file, and each string in a client array, as one "
                      "such file")
    return None




def tls_reason(exc: ssl.SSLError) -> str:
    """What went wrong in a handshake, in one line (an untrusted certificate says why)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    return " ".join(str(exc).split())
