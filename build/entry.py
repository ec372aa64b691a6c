"""The frozen executable's entry point: ``ecrcred.cli:main``, as the console script, with two
start-up savings for the one command the kubelet runs once per image.

``get-credentials`` (also what runs when no command is named, see ``cli._command``) is a process
of a few tens of milliseconds that allocates little garbage, so for it:

- the cyclic garbage collector stays off: it would only walk the objects that importing our
  modules made (and botocore's, on a cache miss), again and again;
- after ``main`` returned and stdout and stderr were flushed, the process ends with ``os._exit``
  instead of finalizing the interpreter (tearing down every module and collecting once more),
  which a cache hit spent about a sixth of its instructions on. ``main`` never raises and has
  written and closed everything it meant to by then; a flush that fails goes the usual way
  (``SystemExit``), so a closed or full stdout ends exactly as before.

The long-running commands (their threads, their ``finally`` blocks) keep the interpreter's
own start and end. ``tests/unit/test_build_entry.py`` runs this file against the console script.
"""

import sys

# The commands that are not the kubelet's one-shot request (cli.COMMANDS, without
# get-credentials and version); named here so that the check runs before ecrcred is imported.
_KEEP_INTERPRETER_EXIT = frozenset({"pull-sandbox", "doctor", "write-auth-file"})
_one_shot = _KEEP_INTERPRETER_EXIT.isdisjoint(sys.argv[1:])
if _one_shot:
    import gc

    gc.disable()

from ecrcred.cli import main  # noqa: E402 - after the collector is off

code = main()
if _one_shot and isinstance(code, int):
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        if sys.stderr is not None:
            sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the interpreter's own exit reports it, as ever
        raise SystemExit(code) from None
    import os

    os._exit(code)
raise SystemExit(code)
