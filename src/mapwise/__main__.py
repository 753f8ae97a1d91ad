"""`python -m mapwise`: the commands of mapwise.cli, for installs without flows/ (the serving image)."""

from mapwise.cli import app

app()
