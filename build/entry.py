"""The frozen executable's entry point: exactly ``ecrcred.cli:main``, as the console script."""

from ecrcred.cli import main

raise SystemExit(main())
