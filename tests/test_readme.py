"""The README's code must run, and CI must run the README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_python_blocks_run_in_order(capsys):
    blocks = _blocks("python")
    assert len(blocks) >= 2
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    match = re.search(r"output spikes: (\d+)", printed)
    assert match is not None
    # the learning block changed the first layer's weights
    assert namespace["net"].linear1.weight.shape == (30, 20)


def test_ci_runs_the_readme_test_command():
    test_command = next(block for block in _blocks("bash") if "pytest" in block).strip()
    ci_script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci_script
