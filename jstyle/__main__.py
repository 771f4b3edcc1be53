"""`python -m jstyle` runs the `jstyle` command."""

from jstyle.cli import main

main()
