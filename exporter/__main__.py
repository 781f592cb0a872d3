"""`python -m exporter` is the same as the `scenario-exporter` command."""

from exporter.cli.main import main

raise SystemExit(main())
