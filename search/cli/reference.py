"""``docs/cli.md``, the command reference, generated from :func:`search.cli.parser.build_parser`.

``python -m search.cli.reference`` rewrites the file; ``--check`` exits 1 when it differs from
what the parser generates (the tests check the same), so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.cli.parser import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
WIDTH = 100  # usage lines are wrapped at this width whatever the terminal


def _fixed_width(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)


def _cell(text: str) -> str:
    """``text`` on one line, safe in a Markdown table cell (and not read as an HTML tag)."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "\\<")


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    value = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
    return ", ".join(f"`{option}{value}`" for option in action.option_strings).replace("|", "\\|")


def _help(action: argparse.Action) -> str:
    text = (action.help or "") % {"default": action.default, "prog": ""}
    if action.choices is not None and action.metavar is None:
        text += f" (one of: {', '.join(map(str, action.choices))})"
    if action.required and action.option_strings:
        text += " (required)"
    return _cell(text)


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    actions = [a for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    if not actions:
        return []
    return ["| argument | what it does |", "| --- | --- |", *(f"| {_name(a)} | {_help(a)} |" for a in actions), ""]


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    _fixed_width(parser)
    return ["```", parser.format_usage().rstrip(), "```", ""]


def markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The command reference of ``parser`` (default: castsearch's) as Markdown."""
    parser = parser or build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {c.dest: c.help for c in sub._choices_actions}
    lines = [f"# {parser.prog} command reference", "",
             "Generated from the argument parser by `python -m search.cli.reference`; do not edit by hand.",
             "`castsearch COMMAND --help` prints the same.", "",
             _cell(parser.description), "", *_usage(parser), *_arguments(parser),
             "| command | what it does |", "| --- | --- |",
             *(f"| [`{name}`](#{parser.prog}-{name}) | {_cell(summaries[name] % {})} |" for name in sub.choices), ""]
    for name, command in sub.choices.items():
        lines += [f"## {parser.prog} {name}", "", _cell(command.description), "", *_usage(command),
                  *_arguments(command)]
        if command.epilog:
            lines += [_cell(command.epilog), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.cli.reference", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help=f"exit 1 if {DOC.name} is not what the parser generates")
    p.add_argument("--out", type=Path, default=DOC, help=f"where to write (default {DOC})")
    args = p.parse_args(argv)
    text = markdown()
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: python -m search.cli.reference rewrites it", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
