"""Several ``samplemix`` commands in one process: ``python tests/cli_sequence.py COMMANDS.json``.

JVM Spark costs its start-up once per process, not once per command: each command
runs through ``cli.main`` in order (a stopped classic session is created again on
the same JVM), and the first that fails ends the process with its exit code.
``COMMANDS.json`` holds a list of argument lists.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_sequence(commands: list[list[str]], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``commands`` (``samplemix`` argument lists) in one child process."""
    listing = cwd / "commands.json"
    listing.write_text(json.dumps(commands))
    return subprocess.run([sys.executable, __file__, str(listing)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def main(listing: str) -> int:
    from samplemix_spark import cli

    for argv in json.loads(Path(listing).read_text()):
        code = cli.main(argv)
        if code:
            return code
    return 0


if __name__ == "__main__":
    from samplemix_spark.engine import session

    session.exit_process(main(sys.argv[1]))
