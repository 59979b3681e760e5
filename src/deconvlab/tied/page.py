"""A page made of a few kinds of blocks, written as Markdown and as standalone HTML.

>>> blocks = [Heading("Title"), Paragraph("Up with *W*."), Table(("a", "b"), [("1", "p(h|v)")])]
>>> print(to_markdown(blocks))
# Title
<BLANKLINE>
Up with *W*.
<BLANKLINE>
| a | b |
|---|---|
| 1 | p(h\\|v) |
<BLANKLINE>
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1


@dataclass(frozen=True)
class Paragraph:
    text: str  # may use *emphasis* and `code`


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Picture:
    path: str  # relative to the page
    caption: str


Block = Heading | Paragraph | Table | Picture


def to_markdown(blocks: list[Block]) -> str:
    """The page as Markdown (GitHub flavour)."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
            for row in block.rows:  # a | inside a cell would end it
                lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
            parts.append("\n".join(lines))
        else:
            parts.append(f"![{block.caption}]({block.path})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    """Escape, then `code` -> <code> and *emphasis* -> <em>."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def to_html(blocks: list[Block], title: str) -> str:
    """The page as one standalone HTML file (no scripts, no external files but its pictures)."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline_html(cell)}</th>" for cell in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline_html(cell)}</td>" for cell in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            body.append(
                f'<figure><img src="{html.escape(block.path)}" alt="{html.escape(block.caption)}">'
                f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.5}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
        "img{image-rendering:pixelated;max-width:100%}figcaption{color:#555}code{background:#f3f3f3}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
