"""``python -m neuroloom``: the ``neuroloom`` command."""

from neuroloom.cli import main

raise SystemExit(main())
