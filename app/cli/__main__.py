"""`python -m app.cli`: the `smartbench` command."""

from app.cli import main

main()
