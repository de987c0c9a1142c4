"""The blocks every script shares by design must stay identical across algos/ (CleanRL's copies drifted).

A shared block runs from a line `# >>> shared:NAME ...` to a line `# <<< shared:NAME`.
"""

import re
from pathlib import Path

import pytest

SCRIPTS = sorted(p for p in (Path(__file__).parents[1] / "algos").glob("*.py") if p.name != "__init__.py")
REQUIRED_BLOCKS = {"args", "boilerplate"}
BLOCK = re.compile(r"^[ \t]*# >>> shared:(\w+).*?$(.*?)^[ \t]*# <<< shared:\1\s*$", re.MULTILINE | re.DOTALL)


def shared_blocks(path: Path) -> dict[str, str]:
    text = path.read_text()
    blocks = {name: body for name, body in BLOCK.findall(text)}
    opened = re.findall(r"# >>> shared:(\w+)", text)
    assert sorted(opened) == sorted(blocks), f"{path.name}: a shared block is not closed: {opened}"
    return blocks


def test_there_are_scripts_to_compare():
    assert len(SCRIPTS) >= 2, [p.name for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_has_the_shared_blocks(script):
    assert REQUIRED_BLOCKS <= set(shared_blocks(script)), script.name


ALL_BLOCKS = sorted({name for script in SCRIPTS for name in shared_blocks(script)})


@pytest.mark.parametrize("name", ALL_BLOCKS)
def test_shared_blocks_are_identical(name):
    """Every block is the same in every script that has it (args and boilerplate: all of them; policy_helpers:
    the policy-gradient scripts)."""
    having = [script for script in SCRIPTS if name in shared_blocks(script)]
    assert len(having) >= 2, f"shared:{name} is in one script only: {having}"
    reference, expected = having[0], shared_blocks(having[0])[name]
    for script in having[1:]:
        assert shared_blocks(script)[name] == expected, (
            f"shared:{name} differs between {reference.name} and {script.name}"
        )


def test_the_policy_scripts_share_their_helpers():
    having = {script.stem for script in SCRIPTS if "policy_helpers" in shared_blocks(script)}
    assert having >= {"mi_pg", "ipg", "jpg", "coma", "maddpg", "mappo", "mackrl"}, having


def test_the_check_notices_drift(tmp_path):
    """The comparison sees a one-character edit (so the test above can fail)."""
    text = SCRIPTS[0].read_text()
    drifted = tmp_path / "drifted.py"
    drifted.write_text(text.replace("seed: int = 1", "seed: int = 2", 1))
    assert shared_blocks(drifted)["args"] != shared_blocks(SCRIPTS[0])["args"]


def test_the_readme_states_each_scripts_length():
    """The README's table of scripts gives each one's length in lines; it must be the file's (it had drifted by up to
    69 lines)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    stated = {name: int(lines)
              for name, lines in re.findall(r"^\| `algos/(\w+\.py)` \| (\d+) \|", readme, re.MULTILINE)}
    actual = {script.name: len(script.read_text().splitlines()) for script in SCRIPTS}
    assert stated == actual
