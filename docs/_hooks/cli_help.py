"""A MkDocs hook: the CLI reference page is each command's own ``--help``, generated at build time.

``docs/reference/cli.md`` holds the marker ``<!-- cli-help -->``; it is replaced by one section per
command of ``deconvlab`` (in the order ``deconvlab --help`` lists them), each with the plain-text help
that click writes (typer's rich boxes turned off), so the page cannot fall behind the code.
"""

from __future__ import annotations

import os

MARKER = "<!-- cli-help -->"
WIDTH = 100


def command_helps() -> list[tuple[str, str]]:
    """``[("deconvlab", help), (name, help) for each command]``, as plain text ``WIDTH`` wide."""
    os.environ["TYPER_USE_RICH"] = "0"  # read when typer is first imported
    import click
    import typer.core
    import typer.main

    from deconvlab.cli import app

    typer.core.HAS_RICH = False  # in case typer was imported before this hook ran
    group = typer.main.get_command(app)
    root = click.Context(group, info_name="deconvlab", max_content_width=WIDTH, terminal_width=WIDTH)
    helps = [("deconvlab", group.get_help(root))]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        context = click.Context(command, info_name=name, parent=root, max_content_width=WIDTH)
        helps.append((name, command.get_help(context)))
    return helps


def cli_markdown() -> str:
    """One ``## deconvlab NAME`` section per command, its help in a ``text`` block."""
    sections = []
    for name, text in command_helps():
        title = name if name == "deconvlab" else f"deconvlab {name}"
        sections.append(f"## `{title}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    """MkDocs event: fill the marker of the CLI page."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_markdown())
