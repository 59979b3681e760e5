"""Every ```python block of docs/transposed-convolution.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "transposed-convolution.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def guide_blocks() -> list[str]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def test_every_block_asserts_something():
    blocks = guide_blocks()
    assert len(blocks) >= 8
    for number, block in enumerate(blocks, 1):
        assert re.search(r"^\s*(assert |np\.testing\.assert_|torch\.testing\.assert_)", block, re.M), (
            f"block {number} checks nothing"
        )


def test_every_block_runs():
    namespace: dict = {}
    for number, block in enumerate(guide_blocks(), 1):
        code = compile(block, f"{GUIDE.name}, python block {number}", "exec")
        exec(code, namespace)  # a failing assert names the block in its traceback
