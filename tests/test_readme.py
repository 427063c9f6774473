"""The README's commands are the ones CI and users run, and its figures match the suite."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

FIRST_HOUR_LINES = 40


def _bash_blocks(text: str | None = None) -> list[str]:
    text = (REPO / "README.md").read_text() if text is None else text
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def _setup_commands() -> tuple[str, str]:
    """The two one-line set-up commands: the main job's and the tests'."""
    one_liners = [block for block in _bash_blocks() if "\n" not in block and " && " in block]
    run = next(block for block in one_liners if "samplemix run" in block)
    test = next(block for block in one_liners if "pytest" in block)
    return run, test


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == [_setup_commands()[1]]


def test_readme_main_command_runs_the_shipped_config():
    assert _setup_commands()[0].endswith("samplemix run --config conf/local.yaml")
    assert (REPO / "conf" / "local.yaml").is_file()


def test_the_first_hour_runs_only_setup_steps_and_documented_subcommands():
    from samplemix_spark.cli import build_parser

    subcommands = next(action.choices for action in build_parser()._subparsers._group_actions)
    setup_commands = _setup_commands()
    setup_steps = {step.strip() for command in setup_commands for step in command.split(" && ")}
    first_hour = "\n".join((REPO / "README.md").read_text().splitlines()[:FIRST_HOUR_LINES])
    commands = [line.split("  #")[0].strip() for block in _bash_blocks(first_hour) for line in block.splitlines()]
    used = set()
    for command in commands:
        if command in setup_commands:
            continue
        words = shlex.split(command)
        if words[0] == ".venv/bin/samplemix":
            assert words[1] in subcommands, command
            used.add(words[1])
        else:
            assert command in setup_steps, f"not a set-up step or a samplemix subcommand: {command}"
    # From clone to report: data, the main job, the page, SQL and the held-out evaluation.
    assert {"demo-data", "run", "report", "sql", "evaluate"} <= used
    assert "notebooks/inspect_mix.ipynb" in first_hour and (REPO / "notebooks" / "inspect_mix.ipynb").is_file()


def _collected(request) -> int:
    """How many tests the whole suite collects: this session's own count when it collected the whole suite."""
    config = request.config
    whole = ([Path(config.invocation_params.dir, arg).resolve() for arg in config.args] in ([], [REPO / "tests"])
             and not config.option.keyword and not config.option.markexpr and not config.getoption("deselect"))
    if whole:
        return len(request.session.items)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return int(re.search(r"(\d+) tests? collected", result.stdout).group(1))


def test_the_readme_states_the_collected_test_count(request):
    text = (REPO / "README.md").read_text()
    stated = re.search(r"([\d,]+)\s+tests\s+\(([\d,]+)\s+passed\s+and\s+([\d,]+)\s+skipped\)", text)
    assert stated, "the README's test figure: 'N tests (P passed and S skipped)'"
    total, passed, skipped = (int(group.replace(",", "")) for group in stated.groups())
    assert passed + skipped == total
    assert total == _collected(request), "update the README's test figure to the collected count"


def test_jobs_are_thin_entry_points_for_every_stage():
    from samplemix_spark.pipeline import EXTRA_JOBS, STAGES

    for stage in STAGES + EXTRA_JOBS:
        source = (REPO / "jobs" / f"{stage.replace('-', '_')}.py").read_text()
        assert f'run(["{stage}", *sys.argv[1:]])' in source
    assert 'run(["run", *sys.argv[1:]])' in (REPO / "jobs" / "run_pipeline.py").read_text()
