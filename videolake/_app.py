"""The ``videolake`` Typer app and its error guard: ``videolake.cli`` and ``videolake.commands_see``
register their commands on it, and neither imports the other's module to get it."""

from __future__ import annotations

import traceback
from typing import Callable, TypeVar

import typer

from videolake.pipeline.errors import ConfigError, VideolakeError

__all__ = ["app", "guard"]

app = typer.Typer(
    name="videolake", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: with markup on, Rich swallows every "[default: ...]"
    help="Batch video analytics: people, tracks and actions from videos into a lake of Delta tables you query with SQL.",
)
T = TypeVar("T")
_debug = False


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    global _debug
    _debug = debug


def guard(fn: Callable[[], T]) -> T:
    """One-line errors with an exit code: 2 for bad arguments, 1 for anything else."""
    try:
        return fn()
    except VideolakeError as exc:
        _print_traceback()
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        _print_traceback()
        typer.echo(f"error: {type(exc).__name__}: {_one_line(str(exc))} (rerun with --debug for the traceback)", err=True)
        raise typer.Exit(1) from None


def _print_traceback() -> None:
    """With --debug: the traceback of the exception being handled, redacted like every other error text."""
    if _debug:
        from videolake.pipeline.storage import redact

        typer.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)


def _one_line(text: str) -> str:
    """An error text as one redacted line."""
    from videolake.pipeline.storage import redact

    return " ".join(redact(text).split())
