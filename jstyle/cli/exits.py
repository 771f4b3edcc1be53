"""The command's exit policy, shared by the experiment scripts: a user's mistake is one line
`jstyle: error: <problem>; <fix>` and status 2; the machine's fault (disk full, permissions,
memory run out) one line and status 1; Ctrl-C and SIGTERM one line saying what was kept, and
130 or 143; a fault of jstyle's own keeps its traceback."""

from __future__ import annotations

import sys
from typing import Callable

from jstyle.engine.session import Stopped
from jstyle.errors import EnvironmentFault, JStyleError
from jstyle.system import interrupt, memory


def guarded(body: Callable[[], None], program: str = "jstyle", smaller: str = "--size",
            stops: bool = True) -> None:
    """Runs `body` under the exit policy (the module docstring), `program` naming the lines,
    `smaller` the flag that lowers its memory; with `stops` False an interruption passes on
    (to jstyle.system.interrupt.main, which says how to resume an experiment)."""
    try:
        body()
    except EnvironmentFault as e:
        _exit(program, str(e), 1)
    except JStyleError as e:
        _exit(program, str(e), 2)
    except OSError as e:  # the machine, not the input: disk full, permissions
        _exit(program, f"{e.filename or 'a file'}: {e.strerror or e}; free disk space or fix "
              "the permissions, then run again", 1)
    except Stopped as e:
        interrupt.answered()
        if not stops:
            raise
        saved = (f"its state at {e.position} is in {e.checkpoint}: rerun the same command "
                 "with --resume to continue" if e.checkpoint else "nothing was saved")
        print(f"{program}: interrupted by {interrupt.name()}; {saved}", file=sys.stderr)
        sys.exit(interrupt.exit_status())
    except KeyboardInterrupt:
        interrupt.answered()
        if not stops:
            raise
        print(f"{program}: interrupted by {interrupt.name()}; nothing was written",
              file=sys.stderr)
        sys.exit(interrupt.exit_status())
    except Exception as e:  # noqa: BLE001 (an allocation the estimate missed)
        if not memory.exhausted(e):
            raise
        _exit(program, f"the machine ran out of memory ({memory.describe(e)}); lower "
              f"{smaller}, or free memory, then run again", 1)


def _exit(program: str, message: str, status: int) -> None:
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(status)
