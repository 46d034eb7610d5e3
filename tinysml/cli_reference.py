"""docs/cli.md: every command's ``--help``, as it prints, in one markdown page.

    python -m tinysml.cli_reference > docs/cli.md

tests/test_cli.py checks that the committed page is what the commands print (under the Python
version that wrote it: argparse's layout changes between versions).
"""
from __future__ import annotations

import os
import sys
from unittest import mock


def reference(width: int = 100) -> str:
    """Every command's ``--help`` as printed at ``width`` columns, in markdown."""
    from .cli import build_parser
    p = build_parser()
    with mock.patch.dict(os.environ, {"COLUMNS": str(width)}):      # argparse reads the width from COLUMNS
        parts = ["# The command line\n", "Every command's `--help`, as it prints. Written by\n",
                 "    python -m tinysml.cli_reference > docs/cli.md\n",
                 f"(tests/test_cli.py checks that this file is what the commands print, under Python "
                 f"{sys.version_info.major}.{sys.version_info.minor}: argparse's layout changes between versions.)\n",
                 "## tinysml\n", "```\n" + p.format_help() + "```\n"]
        for name, parser in p.commands.items():
            parts += [f"## tinysml {name}\n", "```\n" + parser.format_help() + "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
