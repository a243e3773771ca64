"""The ``qfl`` command.

Each sub-command lives in its own module under :mod:`qfl.commands` and is registered here.
Errors caused by bad input (:class:`~qkd.errors.QflError`, which includes every
``ParameterError``) are printed as one line on stderr with exit status 2, never as a
traceback; so are command-line usage errors (unknown option, a value that is not a number).
Any other exception (a bug, an overflow, a full disk) is printed as one line naming it and
the log file that holds its traceback (:mod:`qfl.commands.crash`), with exit status 1, the
status of a failed run; ``--debug`` (anywhere on the command line) prints the traceback too.

Typer (>= 0.2x) vendors click as ``typer._click``; only typer's public names are used here, and
the usage-error class is looked up so that older typer (with click itself, as Flower pins it)
works too.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, cast

import typer
from rich.console import Console

from qfl.threads import prepare_env

prepare_env()  # before the commands import torch: idle OpenMP threads sleep (qfl.threads)

from qfl.commands import crash, keyrate, kme, plan, report, simulate, sweep, validate  # noqa: E402
from qkd.errors import QflError  # noqa: E402

__all__ = ["NOTICE_LOGGERS", "app", "main", "show_notices"]

app = typer.Typer(
    name="qfl",
    help="Quantum-network co-simulation: QKD key rates gate federated-learning transfers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _qfl(
    debug: bool = typer.Option(  # documents the flag: main() takes it out before typer parses
        False,
        "--debug",
        help="On an unexpected error, print its traceback too (it is always written to a log "
        "file: error.log in the run folder, else ~/.cache/qfl/logs/). Also accepted after the "
        "command.",
    ),
) -> None:
    """Quantum-network co-simulation: QKD key rates gate federated-learning transfers."""


app.command("keyrate", cls=keyrate.KeyrateCommand)(keyrate.keyrate)
app.command("validate")(validate.validate)
app.command("schema")(validate.schema)
app.command("simulate")(simulate.simulate)
app.command("sweep")(sweep.sweep)
app.command("plot")(sweep.plot)
app.command("report")(report.report)
app.add_typer(plan.app, name="plan")
app.add_typer(kme.app, name="kme")

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``qfl`` command line and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (without the program name); ``sys.argv[1:]`` when omitted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    args, debug = _take_debug(args)
    show_notices()
    with _sigterm_as_interrupt():
        return _run(args, debug=debug)


def _take_debug(args: list[str]) -> tuple[list[str], bool]:
    """``args`` without ``--debug`` (before a ``--``), and whether it was there: the flag
    works before or after the command (``qfl --debug simulate f.yaml`` or ``qfl simulate
    f.yaml --debug``)."""
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != "--debug"] + args[end:]
    return kept, len(kept) != len(args)


NOTICE_LOGGERS = ("qfl.engine.kernels",)
"""Loggers whose INFO lines the command shows on stderr: long waits the user should know
about (the engine's one-time kernel compile), also where no progress bar is drawn (output
to a file or a pipe)."""


class _Notice(logging.Handler):
    """One plain line per record on the ``sys.stderr`` of the moment (through a progress
    bar's redirection while one is live)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a closed stream must not end the run
            self.handleError(record)


def show_notices() -> None:
    """Show the INFO lines of :data:`NOTICE_LOGGERS` on stderr (once per process)."""
    for name in NOTICE_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(h, _Notice) for h in log.handlers):
            log.addHandler(_Notice())
        log.setLevel(logging.INFO)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a ``kill``, a job scheduler's stop) is handled like Ctrl-C: the run or sweep
    records what it finished and says ``interrupted``."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _usage_error() -> type[Exception]:
    """Click's usage-error base: ``typer.TyperException`` where typer vendors click (typer
    >= 0.2x), ``click.ClickException`` where it depends on click (older typer, which Flower
    pins: ``qfl[flower]``)."""
    vendored = getattr(typer, "TyperException", None)
    if vendored is not None:
        return cast(type[Exception], vendored)
    import click

    return click.ClickException


_USAGE_ERROR: Any = _usage_error()


def _run(args: list[str], *, debug: bool = False) -> int:
    try:
        result = app(args=args, prog_name="qfl", standalone_mode=False)
    except QflError as exc:
        _err.print(f"qfl: error: {exc}", markup=False)
        return 2
    except typer.Abort:
        _err.print("qfl: interrupted", markup=False)
        return 130
    except _USAGE_ERROR as exc:  # click's usage errors
        message = exc.format_message()
        if message:  # empty when the help was shown because no arguments were given
            _err.print(f"qfl: error: {message}", markup=False)
        return int(getattr(exc, "exit_code", 2))
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:  # a bug or an environment problem, not bad input
        return _unexpected(exc, args, debug)
    return int(result) if isinstance(result, int) else 0


def _unexpected(exc: Exception, args: list[str], debug: bool) -> int:
    """One line naming ``exc`` and the log holding its traceback (and, with ``--debug``, the
    traceback itself); exit status 1, that of a failed run."""
    log, why = crash.write_log(exc, [*args, *(["--debug"] if debug else [])])
    if debug:
        sys.stderr.write("".join(traceback.format_exception(exc)))
        sys.stderr.flush()
    _err.print(f"qfl: error: {crash.one_line_report(exc, log, why)}", markup=False)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
