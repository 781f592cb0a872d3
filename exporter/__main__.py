"""`python -m exporter` is the same as the `scenario-exporter` command."""

from exporter.cli import main

raise SystemExit(main())
