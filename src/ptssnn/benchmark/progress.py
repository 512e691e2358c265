"""The benchmark's progress bar: one unit per epoch (a probe fold is one unit), whole-run ETA."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


class RunProgress:
    """Rich progress over the whole run: one unit per epoch (probe fold = one unit)."""

    def __init__(self, total: int, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self.total = total
        self._progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.table import Column

            # The description wraps and the bar shrinks, so in 80 columns nothing is cut to "…".
            self._progress = Progress(
                TextColumn("[bold]{task.description}",
                           table_column=Column(ratio=3, overflow="fold")),
                BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=5)),
                MofNCompleteColumn(),
                TextColumn("elapsed"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
                expand=True,
                console=console,
            )
            self._task = self._progress.add_task("benchmark", total=total)

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def advance(self, units: float) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, units)

    def print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False)
        else:
            print(text, flush=True)
