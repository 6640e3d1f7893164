"""The ``jitgate`` command line: thin Typer commands that call the API client or the workflow."""
