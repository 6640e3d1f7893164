"""``python -m jitgate`` runs the command line."""

from jitgate.cli.entry import main

main()
