"""Every code example in README.md and docs/*.md runs, so the docs cannot rot.

* Every ```python block runs, in order, in one namespace per file (``spark`` is provided, but
  the blocks are self-contained and get their session from ``local_session()``), in a
  temporary working directory.
* Every ``sparkml-lloyd`` (or ``python -m sparkml_lloyd``) command in a ```bash block is
  parsed by the command line's own parser: options, required arguments and choices must be
  right. (Nothing is run; ``bench`` arguments belong to the runner and are not checked.)

Blocks that are not meant to run use another fence language (```text, ```console).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from sparkml_lloyd import cli

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)[^\n]*$")
#: The two commands at the top of the README, which CI and newcomers run as they are.
README_COMMANDS = [
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[demo]" && .venv/bin/sparkml-lloyd '
    "demo",
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" && .venv/bin/python -m pytest',
]


def code_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every fenced block in ``language``."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, lang = match.group(1), match.group(2).lower()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if lang == language:
            blocks.append((i + 2, "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return blocks


def with_blocks(language: str) -> list[Path]:
    return [p for p in FILES if code_blocks(p, language)]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A temporary working directory. (The examples do not touch the ``sparkml_lloyd`` logger
    or call code that attaches handlers to it: there is nothing else to restore.)"""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path", with_blocks("python"), ids=rel)
def test_python_examples_run(path, spark, sandbox):
    namespace = {"__name__": f"docs_example_{path.stem.replace('-', '_')}", "spark": spark}
    for line, code in code_blocks(path, "python"):
        try:
            exec(compile(code, f"{rel(path)}:{line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(
                f"the python block at {rel(path)}:{line} failed: {type(e).__name__}: {e}"
            ) from e


def cli_commands(code: str) -> list[list[str]]:
    """The argument lists of the ``sparkml-lloyd`` commands in a shell snippet."""
    commands = []
    for logical in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(logical, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        segment: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set(";&|"):
                args = segment_args(segment)
                if args is not None:
                    commands.append(args)
                segment = []
            else:
                segment.append(token)
    return commands


def segment_args(tokens: list[str]) -> list[str] | None:
    if tokens and os.path.basename(tokens[0]) == "sparkml-lloyd":
        return tokens[1:]
    if len(tokens) >= 3 and re.fullmatch(r"python[\d.]*", os.path.basename(tokens[0])) and (
        tokens[1:3] == ["-m", "sparkml_lloyd"]
    ):
        return tokens[3:]
    return None


def all_cli_commands() -> list[tuple[str, list[str]]]:
    return [
        (f"{rel(path)}:{line}", args)
        for path in with_blocks("bash")
        for line, code in code_blocks(path, "bash")
        for args in cli_commands(code)
    ]


CLI_COMMANDS = all_cli_commands()


@pytest.mark.parametrize(("where", "args"), CLI_COMMANDS, ids=[w for w, _ in CLI_COMMANDS])
def test_cli_commands_in_docs_parse(where, args):
    head, _forwarded = cli.split_bench(args)
    try:
        cli.build_parser().parse_args(head)
    except SystemExit as e:
        assert e.code == 0, f"{where}: 'sparkml-lloyd {shlex.join(args)}' does not parse"


def test_docs_show_cli_commands():
    assert len(CLI_COMMANDS) >= 10
    assert {args[0] for _, args in CLI_COMMANDS if args} >= {"fit", "predict", "demo", "bench"}


def test_readme_keeps_its_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    bash = [code.strip() for _, code in code_blocks(ROOT / "README.md", "bash")]
    assert bash[:2] == README_COMMANDS
    assert readme.index(README_COMMANDS[0]) < readme.index(README_COMMANDS[1])
