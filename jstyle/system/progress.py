"""Progress for long runs: a bar with ETA on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """Reports `update(step, message)` calls for a run of `total` steps.

    On a terminal (stderr is a TTY) it draws a tqdm bar; elsewhere (CI, pipes, notebooks'
    captured output) it writes one line per update to stderr, with the time left at the rate
    so far.
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, unit: str = "step"):
        self.total = total
        self.unit = unit
        self.desc = desc
        self.start = time.perf_counter()
        self.first_step = None  # the step of the first update (a resumed run starts there)
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, step: int, message: str = "") -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(message)
        else:
            elapsed = time.perf_counter() - self.start
            if self.first_step is None:
                self.first_step = step
            done = step - self.first_step
            eta = (f", about {elapsed / done * (self.total - step):.0f}s left"
                   if 0 < done and step < self.total else "")
            print(f"{self.desc}: {self.unit} {step}/{self.total} ({elapsed:.1f}s{eta}) {message}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
