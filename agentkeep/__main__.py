"""``python -m agentkeep``: the same as the ``agentkeep`` command."""

from agentkeep.cli import app

app(prog_name="agentkeep")
