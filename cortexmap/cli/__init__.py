"""Command-line front: a thin typer layer over the Python API.

Each area registers its commands from its own module (``register(app, run_app)``) so the
CLI stays a list of small files.
"""

from __future__ import annotations

import errno
import importlib
import sys

import typer
from pydantic import ValidationError
from rich.console import Console

from cortexmap.errors import CortexmapError

app = typer.Typer(
    name="cortexmap",
    help="In-silico neurophysiology: experiments on deep networks and RSA mapping to brains.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(help="Run one of the published analyses.", no_args_is_help=True)
app.add_typer(run_app, name="run")

# Modules under cortexmap.cli that define ``register(app, run_app)``.
_AREAS = [
    "core",
    "models",
    "synthesis",
    "rsa",
    "center_periphery",
    "brain",
    "train",
    "encoding",
    "data",
    "run",
]

try:
    for _area in _AREAS:
        importlib.import_module(f"cortexmap.cli.{_area}").register(app, run_app)
except KeyboardInterrupt:  # Ctrl-C while the command starts: nothing ran yet, no traceback
    print("interrupted while starting; nothing was run.", file=sys.stderr)
    sys.exit(130)

err_console = Console(stderr=True)


def _options_message(exc: ValidationError) -> str:
    """'n_perm: Input should be greater than or equal to 1 (got -1)' for each bad setting."""
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '(options)'}: {err['msg']} "
             f"(got {err.get('input')!r})" for err in exc.errors()]
    return "Invalid option(s): " + "; ".join(parts) + ". See --help."


INTERRUPTED = ("interrupted: finished results are kept; run the same command again to resume "
               "(it continues where this run stopped).")


def main() -> None:
    """Entry point: run the app; input errors become a one-line message and exit code 2,
    Ctrl-C exits 130 saying how to resume."""
    try:
        rc = app(standalone_mode=False)
    except CortexmapError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except ValidationError as exc:  # an option out of range, checked before any work
        err_console.print(f"[bold red]error:[/] {_options_message(exc)}")
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC):
            raise
        where = f" {exc.filename}" if exc.filename else ""
        err_console.print(f"[bold red]error:[/] cannot write{where}: {exc.strerror}; choose an "
                          "output location you can write to (--out) or fix its permissions.")
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        rc = getattr(exc, "exit_code", getattr(exc, "code", 0))
    except typer.Abort as exc:
        if isinstance(exc.__cause__, EOFError):  # a truncated input file, not the user
            err_console.print(f"[bold red]error:[/] an input file ended early (truncated or "
                              f"empty): {exc.__cause__ or 'unexpected end of file'}; re-create it.")
            sys.exit(2)
        err_console.print(INTERRUPTED)
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if rc == 130:  # typer turns Ctrl-C into Exit(130), which non-standalone mode returns
        err_console.print(INTERRUPTED)
    sys.exit(rc if isinstance(rc, int) else 0)
