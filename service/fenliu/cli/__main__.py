"""``python -m fenliu.cli.commands``."""

from fenliu.cli.commands import main

raise SystemExit(main())
