"""Numbers on the front page come from a command, and the options the docs name exist."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smartft.cli import _parser
from smartft.report import BLOCK, doc_pages, written_blocks

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


def load_script(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A results script as a module (its dataclasses look themselves up in sys.modules; its
    sibling modules import from its folder)."""
    name = "results_" + path.parent.name.replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, script)
    monkeypatch.syspath_prepend(str(path.parent))
    spec.loader.exec_module(script)
    return script


def test_every_figure_block_in_the_readme_and_docs_is_what_its_script_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No study figure in README.md or docs/ is typed: each block between `<!-- begin NAME:
    written by SCRIPT -->` and `<!-- end NAME -->` is what SCRIPT's blocks() makes of the
    committed runs (rerun the script when runs land)."""
    monkeypatch.chdir(ROOT)
    found = [
        (page.name, *block)
        for page in doc_pages(ROOT)
        for block in written_blocks(page.read_text())
    ]
    assert {"smart-study", "glue-finding", "methods"} <= {name for _, name, _, _ in found}
    scripts: dict[str, dict[str, str]] = {}
    for page, name, script, body in found:
        if script not in scripts:
            scripts[script] = load_script(ROOT / script, monkeypatch).blocks()
        assert name in scripts[script], f"{page}: {script} writes no block {name}"
        assert body == scripts[script][name].strip(), f"{page}: block {name} has drifted"


# a study figure: 0.5596, −0.0132, +0.011 (three or four decimals); code (a command's output,
# an option's value) is not a claim
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
FIGURE = re.compile(r"(?<![\w.])[+−-]?0\.\d{3,4}(?![\d])")


def test_no_study_figure_is_typed_outside_a_written_block() -> None:
    """Figures of the form 0.xxx(x) stand in README.md and docs/ only inside written blocks
    (or as code: a command's printed output, an option's value)."""
    typed = []
    for page in doc_pages(ROOT):
        text = CODE.sub("", BLOCK.sub("", page.read_text()))
        typed += [f"{page.name}: {m[0]}" for m in FIGURE.finditer(text)]
    assert not typed, typed
