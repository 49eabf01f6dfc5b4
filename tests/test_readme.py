"""Numbers on the front page come from a command, and the options the docs name exist."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smartft.cli import _parser

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


# flags of other programs the docs show next to smartft's (torchrun, accelerate, pip, ruff, pytest)
OTHER_PROGRAMS = {
    "--check",
    "--collect-only",
    "--no-deps",
    "--cpu",
    "--machine_rank",
    "--main_process_ip",
    "--master_addr",
    "--master_port",
    "--nnodes",
    "--node_rank",
    "--nproc_per_node",
    "--num_machines",
    "--num_processes",
    "--standalone",
    "--ratio",  # mt-dnn's name, quoted beside ours
    "--torch_compile",  # named to say smartft has no such flag
}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    names: set[str] = set()
    for action in parser._actions:
        names.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= _options(sub)
    return names


def test_every_option_the_docs_name_is_one_smartft_has() -> None:
    """A renamed or removed flag must not live on in the README or docs/ (a user copies it)."""
    known = _options(_parser())
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale = {
        f"{page.name}: {flag}"
        for page in pages
        # `--smart_*` names a family of options, not one
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*(?![\w*-])", page.read_text())
        if flag not in known and flag not in OTHER_PROGRAMS
    }
    assert not stale, sorted(stale)


def test_the_multitask_table_is_the_one_its_script_writes_from_the_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No figure in README's multi-task table is typed: it is what write_results.py makes of
    the committed runs (rerun the script when runs land)."""
    monkeypatch.chdir(ROOT)
    path = ROOT / "results" / "multitask-minilm" / "write_results.py"
    spec = importlib.util.spec_from_file_location("multitask_results", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclass looks itself up there
    spec.loader.exec_module(script)
    text = (ROOT / "README.md").read_text()
    start, end = (text.index(mark) for mark in script.MARKS)
    written = text[start + len(script.MARKS[0]) : end].strip()
    assert written == script.study().table
