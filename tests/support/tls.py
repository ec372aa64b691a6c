"""Certificates for tests, made with the ``openssl`` command: a CA, a server certificate for
127.0.0.1, and client certificates a CA signs (for registries that demand mutual TLS).

Each function writes PEM files into a directory and returns their paths; EC P-256 keys, valid
for a week, no passphrase (``encrypt_key`` makes a copy of a key that has one).
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import NamedTuple

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256"]


class Pair(NamedTuple):
    cert: str
    key: str
    combined: str  # the certificate and its key in one file (containerd's client = "file")


def _openssl(*args: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def _combine(directory: Path, name: str, cert: Path, key: Path) -> Pair:
    combined = directory / f"{name}-combined.pem"
    combined.write_text(cert.read_text() + key.read_text())
    return Pair(str(cert), str(key), str(combined))


def make_ca(directory: Path, name: str) -> Pair:
    """A self-signed CA that may sign certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl("req", "-x509", *_EC, "-days", "7", "-subj", f"/CN=ecrcred test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
             "-keyout", str(key), "-out", str(cert))
    return _combine(directory, name, cert, key)


def make_server_cert(directory: Path, name: str) -> Pair:
    """A self-signed certificate for IP 127.0.0.1 that is also its own CA (trust it as ``ca``)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl("req", "-x509", *_EC, "-days", "7", "-subj", f"/CN=ecrcred test {name}",
             "-addext", "subjectAltName=IP:127.0.0.1",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
             "-addext", "extendedKeyUsage=serverAuth",
             "-keyout", str(key), "-out", str(cert))
    return _combine(directory, name, cert, key)


def make_client_cert(directory: Path, name: str, ca: Pair) -> Pair:
    """A client certificate (extendedKeyUsage clientAuth) signed by ``ca``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, csr = (directory / f"{name}.pem", directory / f"{name}.key",
                      directory / f"{name}.csr")
    extensions = directory / f"{name}.ext"
    extensions.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                          "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-new", *_EC, "-subj", f"/CN=ecrcred test {name}", "-keyout", str(key),
             "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", ca.cert, "-CAkey", ca.key,
             "-CAcreateserial", "-days", "7", "-sha256", "-extfile", str(extensions),
             "-out", str(cert), cwd=directory)
    return _combine(directory, name, cert, key)


def encrypt_key(pair: Pair, directory: Path, form: str) -> Pair:
    """``pair`` with its key encrypted: ``form`` "pkcs8" (``ENCRYPTED PRIVATE KEY``) or
    "traditional" (``EC PRIVATE KEY`` with ``Proc-Type: 4,ENCRYPTED``), under a passphrase
    nobody is told; ``combined`` holds the certificate and the encrypted key."""
    directory.mkdir(parents=True, exist_ok=True)
    name = Path(pair.key).stem
    key = directory / f"{name}-{form}-encrypted.key"
    command = {"pkcs8": "pkey", "traditional": "ec"}[form]
    _openssl(command, "-in", pair.key, "-aes256", "-passout", f"pass:{secrets.token_hex(8)}",
             "-out", str(key))
    return _combine(directory, f"{name}-{form}-encrypted", Path(pair.cert), key)
