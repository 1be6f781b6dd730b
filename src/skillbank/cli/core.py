"""What every command shares: the Typer app, the library handle, output, progress bars, errors."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..library import Library, LibraryError, default_home
from ..run.worker import JobsBar
from ..skill import SkillError

app = typer.Typer(help="skillbank: a versioned library of neural-network skills.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
base_app = typer.Typer(help="Register and list base models.", no_args_is_help=True)
app.add_typer(base_app, name="base", rich_help_panel="Library")

# no console markup: printed text holds user data (paths, metadata, recipes), and "[x]" in
# it must print as written, never style the terminal or fail to parse
out = Console(markup=False)
err = Console(stderr=True, markup=False)
_state: dict[str, Any] = {"home": None}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
AddressOpt = Annotated[str | None, typer.Option(help="Ray cluster address (implies --executor ray).")]
WorkersOpt = Annotated[int | None, typer.Option(min=1, help="Parallel workers (a local process pool, or Ray actors).")]


@app.callback()
def _main(home: Annotated[Path | None, typer.Option(
        "--home", envvar="SKILLBANK_HOME",
        help="Library home directory (default ~/.skillbank; env SKILLBANK_HOME).")] = None) -> None:
    _state["home"] = home


def _home() -> Path:
    return _state["home"] or default_home()


def lib(write: bool = False, create: bool = False) -> Library:
    """The library at --home. Only commands that make things (``create``) make a new home,
    so a mistyped --home is an error rather than a silently empty library; a command that
    writes (``write``) is refused on a read-only home before it starts any work."""
    library = Library.open(_home(), create=create)
    if write or create:
        library._need_write()
    return library


def _finite(data: Any) -> Any:
    """``data`` with every NaN or infinite float as None: JSON has no NaN."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def emit(data: Any) -> None:
    sys.stdout.write(json.dumps(_finite(data), indent=2, sort_keys=True, default=str,
                                allow_nan=False) + "\n")


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title)
    for h in header:
        t.add_column(h)
    for r in rows:
        t.add_row(*[f"{x:.3f}" if isinstance(x, float) else str(x) for x in r])
    out.print(t)


def fmt_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class Ui(JobsBar):
    """Progress bars (loss and ETA) on stderr, messages on stdout; quiet under --json."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def say(self, msg: str) -> None:
        if not self.quiet:
            out.print(msg)

    @contextmanager
    def bar(self, desc: str, total: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self.quiet:
            yield lambda step, loss: None
            return
        cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn()]
        p = Progress(*cols, console=err, transient=False)
        task = p.add_task(desc, total=total, loss="")

        def update(step: int, loss: float | None) -> None:
            if not p.live.is_started:  # shown from the first step: an error before any
                p.start()              # work is the one line printed, with no stale bar
            p.update(task, completed=step, loss=f"loss {loss:.4f}" if loss is not None else "")

        try:
            yield update
        except BaseException:
            if p.live.is_started:
                p.stop()
            raise
        if not p.live.is_started:
            p.start()
        p.stop()


def csv_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise SkillError(f"expected a comma-separated list, got {value!r}")
    return items

def world_of(library: Library, skills, world: str | None, data: Path | None) -> tuple[str, dict]:
    """The world (and pinned arguments) a command over ``skills`` runs in: ``--data`` /
    ``--world`` when given, else what the skills' recipes name — a composed skill's
    through its lineage (``worlds.world_for``)."""
    from ..worlds import world_for

    recipes, todo, seen = [], list(skills), set()
    while todo and len(seen) < 1000:
        s = todo.pop()
        if s.ref in seen:
            continue
        seen.add(s.ref)
        if isinstance(s.recipe.get("world"), str):
            recipes.append(s.recipe)
        else:
            todo += [library.get(ref) for ref in s.lineage]
    return world_for(recipes, world, data)


def _one_line(message: str) -> None:
    """``error: MESSAGE`` on one line of stderr (newlines in it folded), exit 2."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    err.print(f"error: {text}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(2)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Abort:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except typer.TyperException as e:  # a bad option or argument: one line, like every error
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        _one_line(f"{where}{message}{hint}")
    except (SkillError, LibraryError, ValueError, FileNotFoundError) as e:
        _one_line(str(e))
    except OSError as e:  # a read-only or full disk, a missing directory: one line, no trace
        _one_line(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    except sqlite3.Error as e:
        _one_line(f"the library catalog cannot be used ({e}); run `skillbank verify`")
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except (RecursionError, MemoryError) as e:
        _one_line(f"the input is too large or too deeply nested ({type(e).__name__})")
    except Exception as e:  # a bug: still one line; SKILLBANK_DEBUG=1 shows the traceback
        if os.environ.get("SKILLBANK_DEBUG"):
            raise
        _one_line(f"internal error ({type(e).__name__}: {str(e)[:300]}); please report it "
                  "(SKILLBANK_DEBUG=1 shows the traceback)")
