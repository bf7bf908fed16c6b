"""``python -m coreselect`` runs the command line."""

from coreselect.cli import main

main()
