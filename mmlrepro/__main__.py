"""``python -m mmlrepro``: the same as the ``mmlrepro`` command."""

from mmlrepro.cli import main

raise SystemExit(main())
