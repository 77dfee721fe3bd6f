"""mkdocs hooks (mkdocs.yml `hooks:`): the home page is README.md; the command-line page is generated from the
argparse parsers at build time.

docs/cli.md holds the marker `<!-- cli-reference -->`; it is replaced by one section per (sub)command of
`hooked_bilinear.cli.parser()` with its usage line, description and a table of every argument, so the page cannot
drift from the code.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nbconvert.exporters.html import HTMLExporter

MARKER = "<!-- cli-reference -->"
README_MARKER = "<!-- readme -->"
# nbconvert's HTML template imports Mermaid from cdnjs when a notebook holds a diagram. The tutorials hold none, and
# no page may reference a remote script (tests/test_docs_site.py), so the notebook pages lose the addresses.
REMOTE_SCRIPTS = [HTMLExporter.mermaid_js_url.default_value, HTMLExporter.mermaid_layout_elk_js_url.default_value]


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _help(action: argparse.Action) -> str:
    """An argument's help as argparse would print it (its %-escapes resolved)."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return action.help % {"default": action.default, "prog": "", "choices": action.choices}


def _argument_row(action: argparse.Action) -> str:
    name = ", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        values = " \\| ".join(f"`{choice}`" for choice in action.choices)
    elif action.nargs == 0:
        values = "(flag)"
    elif action.type is not None:
        values = getattr(action.type, "__name__", str(action.type))
    else:
        values = "str"
    if action.nargs in ("+", "*"):
        values += " (one or more)" if action.nargs == "+" else " (any number)"
    default = "" if action.default in (None, argparse.SUPPRESS, False, []) or action.required else f"`{action.default}`"
    return f"| {name} | {_cell(values)} | {_cell(default)} | {_cell(_help(action))} |"


def render(parser: argparse.ArgumentParser, level: int = 2) -> str:
    """Markdown for `parser` and, recursively, every sub-command under it."""
    out: list[str] = []
    subcommands: list[tuple[str, argparse.ArgumentParser]] = []
    rows: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            subcommands.extend(action.choices.items())
            continue
        rows.append(_argument_row(action))
    out.append(f"{'#' * level} `{parser.prog}`\n")
    if parser.description:
        out.append(parser.description.strip() + "\n")
    out.append("```text\n" + parser.format_usage().strip() + "\n```\n")
    if rows:
        out.append("| argument | values | default | what |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    for _, child in subcommands:
        out.append(render(child, min(level + 1, 6)))
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if README_MARKER in markdown:
        readme = Path(config["config_file_path"]).parent / "README.md"
        markdown = markdown.replace(README_MARKER, readme_as_home(readme.read_text()))
    if MARKER in markdown:
        from hooked_bilinear.cli import parser

        markdown = markdown.replace(MARKER, render(parser()))
    return markdown


def readme_as_home(readme: str) -> str:
    """README.md as the site's home page: its links point into docs/ from the repository root; here they are
    relative to docs/ (tutorials/ is linked into docs/)."""
    return readme.replace("](docs/", "](")


def on_post_page(output: str, page: Any, config: Any) -> str:
    for url in REMOTE_SCRIPTS:
        output = output.replace(url, "")
    return output
