"""Ctrl-C and SIGTERM alike: a long command stops, keeps a checkpoint, says how to resume and
exits (130 after Ctrl-C, 143 after SIGTERM, what schedulers and preemptible machines send).

`install` makes both signals raise KeyboardInterrupt where the program is (the pixel methods
then save a checkpoint of the last finished chunk); `defer` makes them set an event instead,
for loops that stop between steps (training).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

RECEIVED: list[int] = []  # the signals that came, in order
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt (in the main thread only)."""
    def handler(signum, frame):
        del frame
        RECEIVED.append(signum)
        raise KeyboardInterrupt
    if _main_thread():
        for s in SIGNALS:
            signal.signal(s, handler)


def defer(event: threading.Event):
    """Ctrl-C and SIGTERM set `event` instead; returns a function that puts the previous
    handlers back."""
    if not _main_thread():
        return lambda: None

    def handler(signum, frame):
        del frame
        RECEIVED.append(signum)
        event.set()
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    return lambda: [signal.signal(s, h) for s, h in previous.items()]


def exit_status() -> int:
    """143 if the last signal was SIGTERM, else 130 (Ctrl-C)."""
    return 143 if RECEIVED and RECEIVED[-1] == signal.SIGTERM else 130


def name() -> str:
    """How the last interruption came, for messages."""
    return "SIGTERM" if exit_status() == 143 else "Ctrl-C"


def main(program: str, body, resume: str | Callable[[], str]):
    """`body` (an absl main) with Ctrl-C and SIGTERM alike, for the experiment scripts: the
    work finished so far is kept, one line `<program>: interrupted by ...; <resume>` says how
    to go on (`resume` a text, or a function that finds it then), and the exit status is 130
    or 143."""
    def run(argv):
        install()
        try:
            body(argv)
        except KeyboardInterrupt:
            how = resume() if callable(resume) else resume
            print(f"{program}: interrupted by {name()}; {how}", file=sys.stderr)
            sys.exit(exit_status())
    return run
