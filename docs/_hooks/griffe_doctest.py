"""A griffe extension: the ``>>>`` examples of deconvlab's docstrings become fenced ``pycon`` blocks.

deconvlab's docstrings are prose with doctests (no Google or NumPy sections); Markdown would read a
``>>>`` line as three nested quotes. Each run of lines from a ``>>>`` line to the next blank line is
fenced, so the site shows the examples that ``pytest --doctest-modules`` runs. A reStructuredText
simple table (three rules of ``=====  ====``) is fenced as ``text``, so its columns stay aligned.
"""

from __future__ import annotations

import re

import griffe

RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")  # a rule of a reStructuredText simple table


def fence_doctests(text: str) -> str:
    """Wrap every doctest block of ``text`` in a fenced ``pycon`` block, every simple table in a ``text``
    block (their indentation kept).

    >>> fence_doctests("Add:\\n>>> 1 + 1\\n2\\n\\nDone.").splitlines()
    ['Add:', '```pycon', '>>> 1 + 1', '2', '```', '', 'Done.']
    >>> fence_doctests("==  ==\\na   b\\n==  ==\\n1   2\\n==  ==").splitlines()
    ['```text', '==  ==', 'a   b', '==  ==', '1   2', '==  ==', '```']
    """
    out, inside, indent, rules = [], False, "", 0
    for line in text.splitlines():
        stripped = line.lstrip()
        if not inside and RULE.match(line):
            rules += 1
            if rules % 3 == 1:
                out.append(f"{line[: len(line) - len(stripped)]}```text")
            out.append(line)
            if rules % 3 == 0:
                out.append(f"{line[: len(line) - len(stripped)]}```")
            continue
        if not inside and stripped.startswith(">>>"):
            inside, indent = True, line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
        elif inside and not stripped:
            inside = False
            out.append(f"{indent}```")
        out.append(line)
    if inside:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFence(griffe.Extension):
    """Fence the doctests of every docstring griffe reads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
