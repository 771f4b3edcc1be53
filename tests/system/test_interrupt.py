"""Ctrl-C and SIGTERM that Python lost (raised inside a garbage-collector callback, where
exceptions are ignored) are raised again at the next check, and no result is written."""

import signal

import numpy as np
import pytest

from jstyle.engine.session import Result, Session
from jstyle.system import interrupt


def test_a_lost_interrupt_is_raised_once_at_the_next_check():
    interrupt._LOST.append(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        interrupt.check()
    interrupt.check()  # once
    interrupt._LOST.append(signal.SIGTERM)
    interrupt.answered()  # a KeyboardInterrupt was caught: nothing is lost
    interrupt.check()


def test_a_run_interrupted_by_a_lost_signal_writes_no_result(tmp_path):
    result = Result({"output": np.zeros((4, 4, 3), np.float32)}, {"method": "m"}, [])
    interrupt._LOST.append(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            Session(output=tmp_path / "out.png").write(result)
    finally:
        interrupt.answered()
    assert list(tmp_path.iterdir()) == []
