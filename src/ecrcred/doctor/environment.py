"""The environment a systemd service gets, and the docker config files it would then read.

A systemd service gets no HOME unless its unit sets one: cri-dockerd then never reads
``/root/.docker/config.json`` (where ``docker login`` wrote the credentials) and pulls the pause
image without credentials. And the kubelet reads only the *first* docker config file that
parses, even when a later one has the entry. Both are invisible from an operator's shell,
which has HOME.

So this looks at the file search as the kubelet does it (root dir ``/var/lib/kubelet``, working
directory ``/``) with the HOME of this process and of the running kubelet and cri-dockerd
(``/proc/<pid>/environ``, readable by root), and compares it with the docker login of the user
the service runs as.
"""

from __future__ import annotations

import os
import pwd
from typing import TYPE_CHECKING, NamedTuple

from ecrcred.doctor.report import Check, ok, warn
from ecrcred.imageref import registry_host
from ecrcred.sources.dockerconfig import DockerConfigSource, Tried, search_paths

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ecrcred.seams import Clock, CredentialSource, Logger

SERVICES = ("kubelet", "cri-dockerd")
KUBELET_ROOT = "/var/lib/kubelet"


class Process(NamedTuple):
    pid: int
    name: str
    cmdline: list[str]
    env: dict[str, str] | None  # None: not readable (not root)
    uid: int


def processes(proc_root: str = "/proc", names: tuple[str, ...] = SERVICES) -> list[Process]:
    """Running processes named ``names``, with their command line and environment."""
    found = []
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        base = os.path.join(proc_root, entry)
        try:
            with open(os.path.join(base, "comm"), encoding="utf-8", errors="replace") as f:
                name = f.read().strip()
            if name not in names:
                continue
            with open(os.path.join(base, "cmdline"), "rb") as fb:
                cmdline = [a.decode(errors="replace") for a in fb.read().split(b"\0") if a]
            uid = os.stat(base).st_uid
        except OSError:
            continue
        env: dict[str, str] | None
        try:
            with open(os.path.join(base, "environ"), "rb") as fb:
                env = dict(item.decode(errors="replace").partition("=")[::2]
                           for item in fb.read().split(b"\0") if b"=" in item)
        except OSError:
            env = None
        found.append(Process(int(entry), name, cmdline, env, uid))
    return sorted(found)


def _home_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_dir or None
    except KeyError:
        return None


class _Search(NamedTuple):
    first_parsed: str | None  # the file the kubelet's keyring uses (the first that parses)
    answering: str | None  # that file, when it has an entry for the image
    steps: tuple[str, ...]


def _no_helpers(_name: str) -> CredentialSource:
    raise AssertionError("explain never runs a helper")


def _explain(paths: list[str] | None, home: str | None, image: str, clock: Clock,
             log: Logger) -> tuple[str | None, list[Tried]]:
    """The kubelet's docker config search (``paths`` None) or one file's, as ``explain`` says."""
    from ecrcred.config.rules import DockerConfigOptions

    options = DockerConfigOptions(None if paths is None else tuple(paths), KUBELET_ROOT)
    source = DockerConfigSource(options, cwd="/", home=home, helpers=_no_helpers, clock=clock,
                                log=log)
    config, tried = source.explain(image)
    return (config.path if config is not None else None), tried


def _search(image: str, home: str | None, clock: Clock, log: Logger) -> _Search:
    first, tried = _explain(None, home, image, clock, log)
    steps = tuple(f"{t.path}: {t.outcome}" for t in tried)
    answering = first if tried and tried[-1].outcome == "used" else None
    return _Search(first, answering, steps)


def check_environment(image: str, env: Mapping[str, str], running: list[Process],
                      clock: Clock, log: Logger, uid: int | None = None) -> list[Check]:
    """``environment.home`` and ``environment.docker-config``.

    The docker login to compare with is the one under this process's HOME (an operator's
    shell), else the home directory of its user (what ``docker login`` as root writes)."""
    host = registry_host(image)
    uid = os.getuid() if uid is None else uid
    login_home = env.get("HOME") or _home_of(uid)
    login_files = [p for p in search_paths(KUBELET_ROOT, "/", login_home)
                   if login_home and p.startswith(login_home.rstrip("/") + "/")]
    entries: dict[str, bool] = {}

    def has_entry(path: str) -> bool:  # each file read once, though both checks ask
        if path not in entries:
            tried = _explain([path], None, image, clock, log)[1]
            entries[path] = any(t.outcome == "used" for t in tried)
        return entries[path]

    login_with_entry = [p for p in login_files if has_entry(p)]
    home = env.get("HOME") or None
    checks = []
    blind = [(f"this process (HOME {'unset' if home is None else 'set'})", home)]
    blind += [(f"{p.name} (pid {p.pid})", (p.env or {}).get("HOME") or None)
              for p in running if p.env is not None]
    missing = [who for who, their_home in blind if their_home is None]
    seen_by = ", ".join(f"{who}: HOME={h or 'unset'}" for who, h in blind)
    if missing and login_with_entry:
        checks.append(warn(
            "environment.home", f"{', '.join(missing)} has no HOME, so "
            f"{login_with_entry[0]} (which has credentials for {host}) is never read: a "
            "systemd service gets no HOME unless its unit sets one",
            "add Environment=HOME=" + (login_home or "/root") + " to the unit (systemctl edit "
            "<unit>), or copy the file to /var/lib/kubelet/config.json, or read it with an "
            f"ecrcred dockerConfig rule (paths: [{login_with_entry[0]}])", (seen_by,)))
    elif missing:
        checks.append(ok("environment.home", f"{', '.join(missing)} has no HOME (as a systemd "
                         "service without User= or Environment=HOME=); no docker login under "
                         f"{login_home or 'the home directory'} has credentials for {host}, so "
                         "nothing is lost", (seen_by,)))
    else:
        checks.append(ok("environment.home", f"HOME is set for {seen_by}; a systemd service "
                         "gets none unless its unit sets it: run 'env -i ecrcred doctor' to see "
                         "what it sees", (seen_by,)))
    search = _search(image, home, clock, log)
    later = [p for p in search_paths(KUBELET_ROOT, "/", home)
             if p != search.answering and has_entry(p)]
    first_parsed = search.first_parsed
    if search.answering is None and first_parsed and later:
        checks.append(warn(
            "environment.docker-config", f"the kubelet's keyring reads only the first docker "
            f"config file that parses, {first_parsed}, which has nothing for {host}; "
            f"{later[0]} has an entry but is never read",
            f"merge the {host} entry into {first_parsed}", search.steps))
    elif search.answering is not None:
        checks.append(ok("environment.docker-config", f"{search.answering} has credentials for "
                         f"{host} (the kubelet's keyring and cri-dockerd would use it)",
                         search.steps))
    else:
        checks.append(ok("environment.docker-config", f"no docker config file the kubelet "
                         f"reads has credentials for {host}" + (" (none exists)" if not
                                                                 first_parsed else ""),
                         search.steps))
    return checks
