"""Small pieces every analysis command shares: list flags and the findings printout."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from cortexmap.errors import CortexmapError

console = Console()


def split_list(text: str | None, cast=str) -> list | None:
    """'a,b,c' -> [a, b, c]; 'none' or '' -> []; None (flag not given) -> None."""
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [cast(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise CortexmapError(f"Cannot read the list {text!r}: {exc}.") from exc


def print_findings(findings) -> None:
    """Per finding: its evidence class and verdict, the claim, the criterion, numbers, control."""
    for f in findings:
        console.print(finding_line(f))


def finding_line(f) -> str:
    """A finding as rich-markup text: "[evidence] verdict: claim" then criterion and numbers."""
    colour = "green" if f.reproduced else "red"
    text = (f"[bold]{escape(f'[{f.evidence}]')}[/] [{colour}]{f.verdict}[/]: {escape(f.claim)}\n"
            f"  criterion: {escape(f.criterion)}\n  {escape(f.numbers)}")
    return text + (f"\n  control: {escape(f.control)}" if f.control else "")
