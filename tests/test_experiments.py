"""The experiment scripts end to end, in their quick variants."""

import json
import pathlib
import subprocess
import sys

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_seed_figures_quick_run_writes_panel_and_measures(tmp_path, vgg_weights):
    cmd = [sys.executable, str(ROOT / "experiments" / "seed_figures.py"),
           f"--workdir={tmp_path}", "--size=64", "--steps=8"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((tmp_path / "seed_figures.json").read_text())
    assert [r["tv_weight"] for r in summary["tv"]] == [0.0, 0.001, 0.01]
    assert [r["hist_weight"] for r in summary["hist"]] == [0.0, 100.0, 500.0]
    for row in summary["tv"] + summary["hist"]:
        assert (tmp_path / row["image"]).exists()
        assert row["total_variation"] > 0 and row["stats_distance"]["total"] > 0
        assert set(row["stats_distance"]) == {"relu1_1", "relu4_1", "total"}
    assert summary["effects"]["tv_falls_as_w_tv_rises"] is True
    panel = Image.open(tmp_path / "seed_figures.png")
    assert panel.size[0] == 5 * 256 and panel.size[1] > 2 * 256
    # the shared (0, 0) setting ran once; a rerun reuses every setting
    assert first.stderr.count("running 8 steps") == 5
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "running 8 steps" not in again.stderr
    assert json.loads((tmp_path / "seed_figures.json").read_text())["tv"] == summary["tv"]
