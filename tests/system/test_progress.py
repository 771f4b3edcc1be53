"""Progress log lines (stderr not a terminal): step, elapsed seconds and the time left."""

from jstyle.system import progress


def test_log_lines_give_the_time_left_at_the_rate_so_far(capsys, monkeypatch):
    clock = iter([100.0, 100.0, 110.0, 130.0])  # start, then one reading per update
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    bar = progress.Progress(50, "train")
    for step, message in ((10, "resumed"), (20, "loss=3"), (50, "loss=2")):
        bar.update(step, message)
    assert capsys.readouterr().err.splitlines() == [
        "train: step 10/50 (0.0s) resumed",
        "train: step 20/50 (10.0s, about 30s left) loss=3",  # 10 steps in 10 s, 30 to go
        "train: step 50/50 (30.0s) loss=2",
    ]
