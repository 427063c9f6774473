"""The README's two quick-start commands are the ones CI and users run."""

from __future__ import annotations

import re

from .conftest import REPO


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = next(block for block in _bash_blocks() if "pytest" in block)
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == [test_command]


def test_readme_main_command_runs_the_shipped_config():
    run_command = _bash_blocks()[0]
    assert "samplemix run --config conf/local.yaml" in run_command
    assert (REPO / "conf" / "local.yaml").is_file()


def test_jobs_are_thin_entry_points_for_every_stage():
    from samplemix_spark.pipeline import EXTRA_JOBS, STAGES

    for stage in STAGES + EXTRA_JOBS:
        source = (REPO / "jobs" / f"{stage.replace('-', '_')}.py").read_text()
        assert f'run(["{stage}", *sys.argv[1:]])' in source
    assert 'run(["run", *sys.argv[1:]])' in (REPO / "jobs" / "run_pipeline.py").read_text()
