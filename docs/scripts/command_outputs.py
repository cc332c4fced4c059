"""Rewrite the command output shown on the docs pages: each ```text block after a ``<!-- output of: CMD -->`` line.

Run from anywhere after a change that alters what ``earlystop`` prints (a refitted default, a new column):

    python docs/scripts/command_outputs.py

The docs tests (``tests/test_docs_code.py``) fail while a page shows output the command no longer prints.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

from earlystop_core.cli import main as earlystop

DOCS = Path(__file__).resolve().parents[1]
SHOWN = re.compile(
    r"^(?P<head><!--\s*output of:\s*(?P<command>earlystop\s.*?)\s*-->\n```text\n)(?P<output>.*?)(?P<tail>\n```)$",
    re.M | re.S,
)


def printed(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = earlystop(shlex.split(command)[1:])
    if status != 0:
        raise SystemExit(f"`{command}` failed with exit status {status}")
    return out.getvalue().rstrip("\n")


def main() -> int:
    for page in sorted([*DOCS.glob("*.md"), *DOCS.glob("rules/*.md")]):
        text = page.read_text(encoding="utf-8")
        new = SHOWN.sub(lambda m: m["head"] + printed(m["command"]) + m["tail"], text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
