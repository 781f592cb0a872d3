"""The command line: the subcommands and their flags, and the one exit-code policy."""
