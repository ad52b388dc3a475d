"""The sweep's progress view, a listener of the executors: one tqdm bar over the runs and
one line per run that ends (per-run bars are off)."""

from __future__ import annotations

from sgdwalk.studies.worker import Outcome, RunTask


class ProgressView:
    """A bar over `total` runs, `initial` of them done before the sweep began."""

    def __init__(self, total: int, initial: int, name: str, show: bool):
        from tqdm.auto import tqdm

        self.show = show
        self.bar = tqdm(total=total, initial=initial, unit="run", desc=name, disable=not show,
                        dynamic_ncols=True)

    def started(self, task: RunTask) -> None:
        pass  # the bar counts runs that end

    def finished(self, outcome: Outcome) -> None:
        if outcome.status == "busy":
            self._write(f"busy      {outcome.name}: {outcome.error}; waiting for it")
            return
        took = f", {outcome.seconds:.0f} s" if outcome.seconds is not None else ""
        line = f"{outcome.status:9s} {outcome.name} ({outcome.steps} steps{took})"
        self._write(line + (f": {outcome.error}" if outcome.error else ""))
        self.bar.update(1)

    def _write(self, line: str) -> None:
        if self.show:
            self.bar.write(line)

    def close(self) -> None:
        self.bar.close()
