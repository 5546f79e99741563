"""README.md's Python section runs as shown: its example loads a model and generates text."""

import re
import subprocess
import sys

from conftest import REPO


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "README's Python section has no python block"
    return blocks[0]


def test_readme_example_generates_text():
    code = readme_example()
    assert len(code.strip().splitlines()) <= 5
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    assert len(out.strip()) > 20, out
