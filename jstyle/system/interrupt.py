"""Ctrl-C and SIGTERM alike: a long command stops, keeps a checkpoint, says how to resume and
exits (130 after Ctrl-C, 143 after SIGTERM, what schedulers and preemptible machines send).

`install` makes both signals raise KeyboardInterrupt where the program is (the pixel methods
then save a checkpoint of the last finished chunk); `defer` makes them set an event instead,
for loops that stop between steps (training).

Python runs a signal handler only between bytecodes, so a signal that comes during one long
compiled computation (a chunk of steps, style targets at a large --style_scale) waits for it
to end. `install` therefore also starts a watchdog thread that hears each signal at once
(signal.set_wakeup_fd): if the main thread has not answered within NOTICE_SECONDS, one line
says that the run stops when the computation ends, and a second signal then ends the process
at once (its status as above, the work since the last checkpoint lost). Nothing is
half-written then: every file is written by Python code, which answers at once.

Python ignores an exception raised inside a garbage-collector callback (JAX runs one), so the
KeyboardInterrupt of a signal that comes there is lost; the signal stays `lost` until a
KeyboardInterrupt is caught (`answered`), and long work calls `check` at its progress points
and before it writes its result, which raises it again.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from typing import Callable

RECEIVED: list[int] = []  # the signals that came, in order
SIGNALS = (signal.SIGINT, signal.SIGTERM)
NOTICE_SECONDS = 2.0  # how long a signal waits for the main thread before the notice
_ANSWERED = threading.Event()  # set by the handlers, in the main thread
_WATCHDOG: list[threading.Thread] = []  # the one watchdog, once started
_LOST: list[int] = []  # signals whose KeyboardInterrupt may not have reached the program


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install(program: str = "jstyle") -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt (in the main thread only); while the main
    thread cannot answer, a notice, and a second signal ends the process (`program` names it
    in those lines)."""
    def handler(signum, frame):
        del frame
        _answer(signum)
        _LOST.append(signum)
        raise KeyboardInterrupt
    if _main_thread():
        for s in SIGNALS:
            signal.signal(s, handler)
        _watch(program)


def check() -> None:
    """Raises KeyboardInterrupt again for a signal whose first one may have been lost (the
    module docstring)."""
    if _LOST:
        _LOST.clear()
        raise KeyboardInterrupt


def answered() -> None:
    """A KeyboardInterrupt was caught: the signals so far reached the program."""
    _LOST.clear()


def _answer(signum: int) -> None:
    RECEIVED.append(signum)
    _ANSWERED.set()


def _watch(program: str) -> None:
    """Starts the watchdog (once per process): it reads each signal's number from the wakeup
    pipe as the signal arrives."""
    if _WATCHDOG:
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watch():
        while True:
            got = os.read(read, 64)
            if not got:
                return
            if _ANSWERED.wait(NOTICE_SECONDS):
                _ANSWERED.clear()
                continue
            what = "SIGTERM" if got[-1] == signal.SIGTERM else "Ctrl-C"
            os.write(2, f"{program}: {what} came during a computation that cannot stop midway; "
                        f"the run stops when it ends ({what} again stops it now, losing that "
                        "computation)\n".encode())
            while not _ANSWERED.is_set() and not select.select([read], [], [], 0.2)[0]:
                pass
            if _ANSWERED.is_set():
                _ANSWERED.clear()
                continue
            status = 143 if os.read(read, 64)[-1] == signal.SIGTERM else 130
            os.write(2, f"{program}: interrupted again; stopped at once, without saving (any "
                        "earlier checkpoint is kept)\n".encode())
            os._exit(status)

    _WATCHDOG.append(threading.Thread(target=watch, name="jstyle-signals", daemon=True))
    _WATCHDOG[0].start()


def defer(event: threading.Event):
    """Ctrl-C and SIGTERM set `event` instead; returns a function that puts the previous
    handlers back."""
    if not _main_thread():
        return lambda: None

    def handler(signum, frame):
        del frame
        _answer(signum)
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
        install(program)
        try:
            body(argv)
        except KeyboardInterrupt:
            answered()
            how = resume() if callable(resume) else resume
            print(f"{program}: interrupted by {name()}; {how}", file=sys.stderr)
            sys.exit(exit_status())
    return run
