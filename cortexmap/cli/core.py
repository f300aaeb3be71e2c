"""Core commands: layers, extract, rdm, compare, report, demo."""

from __future__ import annotations

import typer


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    """Core commands are added by the foundation modules (issue 2)."""
