"""`python -m toolkit.cli`: the console script."""

from toolkit.cli.common import main

main()
