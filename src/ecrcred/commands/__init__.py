"""The human commands' bodies, ``pull-sandbox`` and ``doctor``: one module each.

Apart from ``ecrcred.cli`` because the kubelet's cache-hit path imports the CLI on every image
pull and never runs these; the CLI imports a command's module only when that command runs. Each
takes the CLI's ``Wiring`` (its flags, env, logger, stdout, and the token cache and router
built as ``get-credentials`` builds them) and returns the exit code; errors propagate to
``cli.main``, the one place they become exit codes.
"""
