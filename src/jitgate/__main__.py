"""``python -m jitgate`` runs the command line."""

from jitgate.cli.main import app

app()
