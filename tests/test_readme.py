"""The README's two set-up commands are what CI runs, word for word."""

import re

from helpers import ROOT


def test_ci_runs_the_readme_setup_commands():
    readme = (ROOT / "README.md").read_text()
    install, test = re.findall(r"```bash\n(.+?)\n```", readme, re.S)[:2]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci and test in ci
    assert "pytest" in test and "pip install" in install
