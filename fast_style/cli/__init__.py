"""Command-line entry points; ``fast-style <command> ...`` dispatches to them."""
