"""Numbers on the front page come from a command: the test count it states is the suite's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_states_the_number_of_tests_the_suite_collects() -> None:
    stated = re.search(r"counts the tests \((\d+) today\)", (ROOT / "README.md").read_text())
    assert stated, "README.md no longer states the test count"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    collected = re.search(r"(\d+) tests? collected", done.stdout)
    assert collected, done.stdout[-500:]
    assert int(stated.group(1)) == int(collected.group(1)), "update the count in README.md"


def test_every_docs_page_the_readme_links_exists() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[\w-]+\.md)\)", text)
    assert links and all((ROOT / link).is_file() for link in links)
