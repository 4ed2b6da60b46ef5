"""The `flamesight` command line.

`commands` holds the group and `info`, `top`, `convert`; `analysis_commands`
adds `summary`, `tree`, `diff`, `render`; `analyze_command` adds `analyze`.
Importing a module registers its commands on the group.
"""

import flamesight.cli.analyze_command  # noqa: F401  (registers analyze)
from flamesight.cli import analysis_commands  # noqa: F401  (registers summary, tree, diff, render)
from flamesight.cli.chat_command import chat_command  # noqa: F401  (registers chat)
from flamesight.cli.commands import main
from flamesight.cli.mcp_command import mcp_command  # noqa: F401  (registers mcp)
from flamesight.cli.serve_command import serve_command  # noqa: F401  (registers serve)
from flamesight.cli.users_command import users_group  # noqa: F401  (registers users, upload)
from flamesight.cli.worker_command import worker_command  # noqa: F401  (registers worker)

__all__ = ["main"]
