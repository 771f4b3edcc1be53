"""The experiment scripts end to end, in their quick variants."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from jstyle import image as image_lib

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


def _experiment(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "experiments" / name), *args]


QUICK_SWEEP = ("--grid=quick", "--size=32", "--batch_size=2")


def test_gatys_sweep_killed_midway_finishes_only_the_rest(tmp_path, vgg_weights):
    cmd = _experiment("gatys_sweep.py", f"--workdir={tmp_path}", *QUICK_SWEEP, "--steps=150")
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while len(list((tmp_path / "points").glob("*.json"))) < 2 and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.kill()  # during the second batch of two
    child.wait()
    assert len(list((tmp_path / "points").glob("*.json"))) == 2
    assert not (tmp_path / "metrics.jsonl").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 of its 4 points to compute" in again.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["grid"] == "quick" and len(config["points"]) == 4
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert {json.loads(l)["point"] for l in lines} == {p["name"] for p in config["points"]}
    assert Image.open(tmp_path / "contact_sheet.png").size[0] == 3 * 160


def test_gatys_sweep_on_two_processes_matches_one(tmp_path, vgg_weights):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    quick = (*QUICK_SWEEP, "--steps=4")
    children = [subprocess.Popen(
        _experiment("gatys_sweep.py", f"--workdir={tmp_path / 'two'}", *quick,
                    f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                    f"--process_id={i}"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for i in range(2)]
    outputs = [c.communicate(timeout=600)[0] for c in children]
    assert [c.returncode for c in children] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    for i, out in enumerate(outputs):
        assert f"process {i} of 2: 2 of its 2 points to compute" in out
    one = subprocess.run(_experiment("gatys_sweep.py", f"--workdir={tmp_path / 'one'}", *quick),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "two" / "points").iterdir()}
    assert sorted(r["process"] for r in records.values()) == [0, 0, 1, 1]
    for name in records:
        np.testing.assert_allclose(
            np.asarray(Image.open(tmp_path / "two" / "images" / f"{name}.png"), np.float32),
            np.asarray(Image.open(tmp_path / "one" / "images" / f"{name}.png"), np.float32),
            atol=2)
    lines = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("two", "one")]
    assert [json.loads(l)["point"] for l in lines[0]] == [json.loads(l)["point"] for l in lines[1]]


def test_compare_methods_and_the_notebook(tmp_path, vgg_weights, monkeypatch):
    import nbclient
    import nbformat
    from jstyle import methods
    pairs = tmp_path / "content", tmp_path / "style"
    for folder, path in zip(pairs, image_lib.sample_paths()):
        folder.mkdir()
        (folder / path.name).write_bytes(path.read_bytes())
    composite = tmp_path / "pasted"  # harmonize's extra row: a square of the photo pasted in
    composite.mkdir()
    painting = image_lib.resize(image_lib.load(image_lib.sample_paths()[1]), 96, 128)
    pasted = painting.copy()
    pasted[32:72, 40:80] = image_lib.resize(image_lib.load(image_lib.sample_paths()[0]), 40, 40)
    mask = np.zeros((96, 128, 3), np.float32)
    mask[32:72, 40:80] = 1
    for name, img in (("painting", painting), ("composite", pasted), ("mask", mask)):
        image_lib.save(composite / f"{name}.png", img)
    compare = tmp_path / "compare"
    result = subprocess.run(_experiment(
        "compare_methods.py", f"--workdir={compare}", f"--content_dir={pairs[0]}",
        f"--style_dir={pairs[1]}", "--size=192", "--steps=3", "--fast_steps=2",
        "--fast_size=32", "--video_frames=2", f"--composites={composite}"),
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(l) for l in (compare / "metrics.jsonl").read_text().splitlines()]
    every = [m for m in methods.BUILTIN if m != "harmonize"]
    assert [l["method"] for l in lines] == ["content", "style", *every, "content", "style",
                                            "harmonize"]
    assert lines[-1]["pair"] == "composite-pasted" and lines[-1]["steps"] == 6
    by_method = {l["method"]: l for l in lines[:-3]}
    assert by_method["content"]["content_distance"] == 0.0
    assert by_method["style"]["style_distance"] == 0.0
    for name in every:  # every method measured
        row = by_method[name]
        assert 0 < row["content_distance"] < np.inf and 0 < row["style_distance"] < np.inf
        assert row["seconds"] > 0 and row["peak_memory_mib"] > 100
    for name in [m for m in every if m not in ("fast", "video")]:  # 3 steps stay near the photo
        assert by_method[name]["content_distance"] < by_method["style"]["content_distance"]
        assert by_method[name]["steps"] >= 3  # mrf: 3 per pyramid level
    clip = by_method["video"]  # 2 frames filmed from the photo, 3 steps each, from noise
    assert clip["steps"] == 6 and 0 < clip["e_warp"] < np.inf and clip["e_warp_clip"] > 0
    assert len(list((compare / "images" / f"video__{lines[0]['pair']}").glob("frame_*.png"))) == 2
    fast = by_method["fast"]  # trained on the content folder, 2 steps
    assert fast["train_steps"] == 2 and fast["train_wall_seconds"] > fast["seconds"]
    style_name = image_lib.sample_paths()[1].stem
    assert (compare / "models" / f"{style_name}-2x32" / "model.msgpack").exists()
    grid = Image.open(compare / "grid.png")
    assert grid.size[0] == (2 + len(every)) * 256
    again = subprocess.run(result.args, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert ": running" not in again.stderr and "training for" not in again.stderr

    sweep_dir = tmp_path / "sweep"
    result = subprocess.run(_experiment("gatys_sweep.py", f"--workdir={sweep_dir}",
                                        *QUICK_SWEEP, "--steps=4"),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    monkeypatch.setenv("JSTYLE_SWEEP_DIR", str(sweep_dir))
    monkeypatch.setenv("JSTYLE_COMPARE_DIR", str(compare))
    notebook = nbformat.read(ROOT / "experiments" / "analysis.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # the plots


def test_gatys_sweep_sigterm_keeps_finished_points_and_says_how_to_resume(tmp_path, vgg_weights):
    import signal
    cmd = _experiment("gatys_sweep.py", f"--workdir={tmp_path}", *QUICK_SWEEP, "--steps=100")
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list((tmp_path / "points").glob("*.json")) and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    err = child.communicate(timeout=300)[1]
    assert child.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        "gatys_sweep: interrupted by SIGTERM; the finished points are kept: rerun the same "
        "command to compute the rest")
    kept = list((tmp_path / "points").glob("*.json"))
    assert kept and all((tmp_path / "images" / f"{p.stem}.png").exists() for p in kept)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{4 - len(kept)} of its 4 points to compute" in again.stderr
    assert len(list((tmp_path / "points").glob("*.json"))) == 4


def test_experiment_help_into_a_closed_pipe_is_quiet():
    """`gatys_sweep.py --help | head`: the reader goes away, the script says nothing more."""
    for name in ("gatys_sweep.py", "compare_methods.py", "seed_figures.py"):
        read, write = os.pipe()
        os.close(read)  # a reader that has already gone
        try:
            done = subprocess.run(_experiment(name, "--help"), stdout=write,
                                  stderr=subprocess.PIPE, text=True, timeout=300)
        finally:
            os.close(write)
        assert done.returncode == 0 and done.stderr == "", (name, done.stderr[-2000:])
        shown = subprocess.run(_experiment(name, "--help"), capture_output=True, text=True,
                               timeout=300)
        assert shown.returncode == 0 and "--workdir:" in shown.stdout, shown.stderr[-2000:]
    sweep_help = subprocess.run(_experiment("gatys_sweep.py", "--help"), capture_output=True,
                                text=True, timeout=300).stdout
    assert "--coordinator_address:" in sweep_help and "--batch_size:" in sweep_help


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a live process (0 once it has gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_running(marker: str) -> int | None:
    """The pid of a process whose command line holds `marker`, or None."""
    for proc in pathlib.Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_text():
                return int(proc.name)
        except OSError:
            continue
    return None


def test_compare_methods_stopped_during_a_run_refuses_a_fresh_rerun_and_resumes(tmp_path,
                                                                                vgg_weights):
    """SIGTERM while gatys runs in its child: the child keeps its checkpoint; a rerun refuses
    to start over it, --resume continues it (from its step, not 0), later reruns reuse it."""
    folders = tmp_path / "content", tmp_path / "style"
    for folder, path in zip(folders, image_lib.sample_paths()):
        folder.mkdir()
        (folder / path.name).write_bytes(path.read_bytes())
    compare = tmp_path / "compare"
    cmd = _experiment("compare_methods.py", f"--workdir={compare}", f"--content_dir={folders[0]}",
                      f"--style_dir={folders[1]}", "--methods=gatys", "--size=32",
                      "--steps=150")
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    child = None
    while parent.poll() is None and (child is None or _cpu_seconds(child) < 20):
        assert time.monotonic() < deadline  # past loading and compiling: optimising
        child = child or _child_running(f"--output={compare}/images/gatys__")
        time.sleep(0.2)
    parent.send_signal(signal.SIGTERM)
    err = parent.communicate(timeout=300)[1]
    assert parent.returncode == 143, err[-2000:]
    checkpoints = list((compare / "images").glob("*.ckpt.npz"))
    assert len(checkpoints) == 1 and not list((compare / "images").glob("*.png"))
    assert err.strip().splitlines()[-1] == (
        f"compare_methods: interrupted by SIGTERM; the finished runs are kept and "
        f"{checkpoints[0]} holds the unfinished one: rerun the same command with --resume to "
        "continue")
    fresh = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 2 and fresh.stderr.strip().splitlines()[-1] == (
        f"compare_methods: error: {checkpoints[0]} holds an unfinished run; rerun with "
        "--resume to continue it, or delete it to start over"), fresh.stderr[-2000:]
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "gatys on " in resumed.stderr and ": resuming" in resumed.stderr
    record = json.loads(checkpoints[0].with_name(
        checkpoints[0].name.replace(".ckpt.npz", ".json")).read_text())
    assert 0 < record["resumed_from_step"] < record["steps"] and not checkpoints[0].exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and ": running" not in again.stderr, again.stderr[-2000:]
