"""``python -m ecrcred``: the same entry point as the ``ecrcred`` executable."""

from ecrcred.cli import main

raise SystemExit(main())
