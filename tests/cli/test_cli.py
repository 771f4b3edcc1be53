"""The `jstyle` command end to end, and every kind of bad input through it."""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from jstyle import image

ROOT = pathlib.Path(__file__).resolve().parents[2]


def jstyle(*args, cwd):
    return subprocess.run([sys.executable, "-m", "jstyle", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def pics(tmp_path_factory, vgg_weights):
    """Small real-looking images in several formats (vgg_weights makes sure the cache is warm)."""
    d = tmp_path_factory.mktemp("pics")
    rng = np.random.default_rng(0)
    base = rng.uniform(size=(6, 8, 3)).astype(np.float32)
    content = (image.resize(base, 48, 64) * 255).astype(np.uint8)
    Image.fromarray(content).save(d / "content.png")
    Image.fromarray(content[::-1]).save(d / "style.jpg")
    Image.fromarray(content[:8, :8]).save(d / "tiny.png")
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    raw = (d / "style.jpg").read_bytes()
    (d / "corrupt.jpg").write_bytes(raw[: len(raw) // 3])
    (d / "folder").mkdir()
    halves = np.zeros((48, 64, 3), np.uint8)
    halves[:, :32], halves[:, 32:] = (230, 20, 20), (20, 20, 230)
    Image.fromarray(halves).save(d / "content_sem.png")  # neural doodle's name for --*_mask=auto
    Image.fromarray(halves[::-1, ::-1]).save(d / "style_sem.png")
    other = halves.copy()
    other[:, 32:] = (20, 200, 20)
    Image.fromarray(other).save(d / "green.png")
    Image.fromarray(halves[:, :40]).save(d / "narrow.png")
    return d


def test_help_lists_flags_with_defaults(tmp_path):
    result = jstyle("--help", cwd=tmp_path)
    assert result.returncode == 0
    for text in ("--content_weight", "--style_blend_weights", "--preserve_colors", "--init",
                 "--mrf_weight", "--rotations", "(default: relu3_1,relu4_1)",
                 "(default by --preset: jstyle 3.5, classic 1.0,", "cnnmrf 384"):
        assert text in result.stdout


def test_help_of_one_method_or_of_training_lists_only_its_flags(tmp_path):
    harmonize = jstyle("--method=harmonize", "--help", cwd=tmp_path)
    assert harmonize.returncode == 0
    assert "--mask: Mask of the pasted object" in harmonize.stdout
    for other in ("\n  --mrf_weight:", "\n  --content_mask:", "\n  --data_dir:",
                  "Presets: gatys"):
        assert other not in harmonize.stdout
    training = jstyle("train", "--help", cwd=tmp_path)
    assert training.returncode == 0
    for text in ("--data_dir", "--steps: Adam steps", "--resume: Continue from the latest "
                 "checkpoint in WORKDIR/checkpoints", "--batch_size"):
        assert text in training.stdout
    for other in ("\n  --mrf_weight:", "L-BFGS", "\n  --output:", "\n  --content:"):
        assert other not in training.stdout


def test_run_writes_image_and_record(pics, tmp_path):
    out = tmp_path / "out.png"
    result = jstyle(f"--content={pics / 'content.png'}", f"--style={pics / 'style.jpg'}",
                    f"--output={out}", "--size=48", "--steps=4", "--print_every=2",
                    "--save_every=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (48, 36)
    assert (tmp_path / "out_2.png").exists() and not (tmp_path / "out.ckpt.npz").exists()
    record = json.loads((tmp_path / "out.json").read_text())
    for key in ("hyperparameters", "options", "vgg_weights", "initial_loss", "final_loss",
                "steps", "seconds", "versions", "history"):
        assert key in record
    assert record["final_loss"]["total"] < record["initial_loss"]["total"]
    assert record["vgg_weights"]["sha256"] and record["versions"]["jax"]
    assert "step 2/4" in result.stderr
    # --steps means steps at every level: the default's schedule gives way, and at 48 px its
    # levels under 128 px are left out
    assert record["levels"] == [{"size": 48, "steps": 4}]


def test_mrf_method_writes_image_and_record(pics, tmp_path):
    out = tmp_path / "mrf.png"
    result = jstyle("--method=mrf", f"--content={pics / 'content.png'}",
                    f"--style={pics / 'style.jpg'}", f"--output={out}", "--size=64",
                    "--pyramid_levels=2", "--steps=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (64, 48)
    record = json.loads((tmp_path / "mrf.json").read_text())
    assert record["method"] == "mrf" and record["preset"] == "cnnmrf"
    assert record["hyperparameters"]["mrf_layers"] == ["relu3_1", "relu4_1"]
    assert [level["size"] for level in record["levels"]] == [32, 64]
    assert set(record["final_loss"]) == {"content", "mrf", "tv", "total"}


BAD = [
    (["--content=missing.jpg"], "does not exist"),
    (["--content={d}/folder"], "is a directory"),
    (["--content={d}/empty.jpg"], "is empty"),
    (["--content={d}/notes.txt"], "not an image"),
    (["--content={d}/corrupt.jpg"], "corrupt or truncated"),
    (["--style={d}/style.jpg,{d}/style.jpg", "--style_blend_weights=1"],
     "1 --style_blend_weights for 2 style images"),
    (["--style_layers=relu1_1,relu9_9"], "unknown VGG-19 layer 'relu9_9'"),
    (["--style_weight=-5"], "style_weight=-5.0 is invalid"),
    (["--content_weight=nan"], "content_weight=nan is invalid"),
    (["--steps=abc"], "steps"),
    (["--output={d}/nowhere/out.png"], "does not exist"),
    (["--output={d}/folder"], "is a directory"),
    (["--content={d}/tiny.png", "--size=8"], "needs at least 16 px"),
    (["--content_mask={d}/content_sem.png", "--style_mask={d}/green.png"],
     "region colour(s) #1414e6 of the content mask appear in no style mask"),
    (["--content_mask={d}/narrow.png", "--style_mask=auto"], "aspect ratio"),
    (["--content_mask=auto"], "give both --content_mask and --style_mask"),
    (["--style_mask=auto,auto", "--content_mask=auto"], "2 --style_mask for 1 style images"),
    (["--preserve_colors=lab"], "preserve_colors"),
    (["--pyramid_levels=2", "--pyramid_steps=3"], "--pyramid_steps needs 2 step counts"),
    (["--method=mrf", "--style_weight=3"], "--style_weight does not apply to --method=mrf"),
    (["--preset=cnnmrf"], "--preset=cnnmrf is not a preset of --method=gatys"),
    (["--method=mrf", "--style_blend_weights=1"], "--style_blend_weights does not apply"),
    (["--method=mrf", "--pyramid_levels=1", "--size=20"], "need at least 24 px"),
    (["--method=mrf", "--normalization=jstyle"], "unknown --normalization=jstyle for mrf"),
    (["--method=mrf", "--size=48", "--pyramid_levels=1", "--content_mask=auto",
      "--style_mask=auto", "--rotations=1"], None),
    (["--content={d}/content.png"], None),  # the baseline the others depart from: must pass
    (["--content_mask=auto", "--style_mask=auto", "--hist_weight=10", "--pyramid_levels=2",
      "--size=48", "--preserve_colors=luminance", "--remat"], None),
    (["--content_mask={d}/content_sem.png", "--style_mask={d}/green.png",
      "--unmatched=global", "--preserve_colors=match"], None),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m or "ok" for _, m in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(pics, tmp_path, args, message):
    defaults = {"content": f"--content={pics}/content.png", "style": f"--style={pics}/style.jpg",
                "output": f"--output={tmp_path}/out.png", "size": "--size=32",
                "steps": "--steps=1", "print_every": "--print_every=0"}
    given = [a.format(d=pics) for a in args]
    given += [flag for name, flag in defaults.items()
              if not any(a.startswith(f"--{name}=") for a in given)]
    before = set(os.listdir(tmp_path))
    result = jstyle(*given, cwd=tmp_path)
    if message is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jstyle: error:"), result.stderr
    assert message in lines[0]
    assert set(os.listdir(tmp_path)) == before


def test_unwritable_output_folder(pics, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root may write into a 0o500 folder; no one can create files in /proc.
    folder = locked if not os.access(locked, os.W_OK) else "/proc"
    try:
        result = jstyle(f"--content={pics}/content.png", f"--style={pics}/style.jpg",
                        f"--output={folder}/out.png", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "writable" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    finally:
        locked.chmod(0o700)


def test_nan_loss_keeps_last_good_image(pics, tmp_path):
    out = tmp_path / "out.png"
    result = jstyle(f"--content={pics}/content.png", f"--style={pics}/style.jpg",
                    f"--output={out}", "--size=32", "--steps=3", "--style_weight=1e38",
                    "--print_every=0", cwd=tmp_path)
    assert result.returncode == 2
    assert "NaN or infinite at step 1" in result.stderr
    assert out.exists() and (tmp_path / "out.json").exists()


def test_sigterm_saves_a_checkpoint_and_resume_continues_to_more_steps(pics, tmp_path):
    import shutil
    import signal
    out = tmp_path / "out.png"
    ckpt = tmp_path / "out.ckpt.npz"
    args = [sys.executable, "-m", "jstyle", f"--content={pics}/content.png",
            f"--style={pics}/style.jpg", f"--output={out}", "--size=48", "--optimizer=adam",
            "--print_every=1"]
    child = subprocess.Popen([*args, "--steps=5000"], cwd=tmp_path, stderr=subprocess.PIPE,
                             text=True)
    lines = []
    for line in child.stderr:
        lines.append(line)
        if "step 4/5000" in line:
            break
    child.send_signal(signal.SIGTERM)
    rest = child.communicate(timeout=300)[1]
    assert child.returncode == 143, "".join(lines) + rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("jstyle: interrupted by SIGTERM; its state at step ") and \
        "--resume" in last, last
    step = int(last.split("at step ")[1].split()[0])
    assert step >= 4 and ckpt.exists() and not out.exists()
    assert not (tmp_path / "out.json").exists()
    kept = tmp_path / "kept.npz"
    shutil.copy(ckpt, kept)

    for extra, message in ((["--style_weight=3"], "differs in hyperparameters.style_weight"),
                           ([f"--steps={step - 1}"], f"at step {step}, beyond the {step - 1}")):
        bad = jstyle(*args[3:], *extra, "--resume", cwd=tmp_path)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert message in bad.stderr and "kept" in bad.stderr or "give at least" in bad.stderr
        assert ckpt.exists()  # never deleted by a failed resume

    fresh = jstyle(*args[3:], "--steps=3", cwd=tmp_path)  # forgot --resume: nothing lost
    assert fresh.returncode == 2 and "holds an unfinished run" in fresh.stderr, fresh.stderr
    assert ckpt.exists()
    resumed = jstyle(*args[3:], f"--steps={step + 3}", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["resumed_from_step"] == step and record["steps"] == step + 3
    assert 0 < record["memory"]["estimated_peak_gib"] < record["memory"]["available_gib"]
    assert record["memory"]["measured_peak_rss_gib"] > 0
    assert [h["step"] for h in record["history"]] == list(range(1, step + 4))
    assert not ckpt.exists()
    missing = jstyle(*args[3:], "--steps=3", "--resume", cwd=tmp_path)
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr


def test_after_kill_9_resume_with_other_steps_continues_from_the_periodic_checkpoint(
        pics, tmp_path):
    import time
    ckpt = tmp_path / "out.ckpt.npz"
    args = [f"--content={pics}/content.png", f"--style={pics}/style.jpg",
            f"--output={tmp_path / 'out.png'}", "--size=48", "--optimizer=adam",
            "--print_every=1", "--save_every=3"]
    child = subprocess.Popen([sys.executable, "-m", "jstyle", *args, "--steps=5000"],
                             cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not ckpt.exists():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child.kill()
    child.wait()
    from jstyle.engine import checkpoint
    step = checkpoint.read(ckpt).record["position"]["step"]
    resumed = jstyle(*args, f"--steps={step + 2}", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["resumed_from_step"] == step >= 3 and record["steps"] == step + 2
    assert [h["step"] for h in record["history"]] == list(range(1, step + 3))


def test_a_clip_from_the_command_writes_frames_records_and_an_mp4_and_resumes(tmp_path):
    """--method=video on a 3-frame clip: SIGTERM in frame 2 keeps frame 1 and a checkpoint;
    --resume finishes frame 2 from its state and frame 3, then writes the mp4 and the record."""
    import signal
    sys.path.insert(0, str(ROOT / "tools"))
    import make_clip
    from jstyle.image import clips
    frames, _, _ = make_clip.pan_zoom(image.load(image.sample_paths()[0]), 3, 48, 36,
                                      (2.0, 1.0), 1.0)
    for t, f in enumerate(frames, start=1):
        image.save(tmp_path / f"frame_{t:04d}.png", f)
    args = [f"--content={tmp_path}/frame_%04d.png", f"--style={image.sample_paths()[1]}",
            f"--output={tmp_path}/out", "--method=video", "--preset=quick", "--size=48",
            "--first_frame_steps=3", "--tol=0", "--print_every=1"]
    child = subprocess.Popen([sys.executable, "-m", "jstyle", *args, "--steps=100000"],
                             cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in child.stderr:
        lines.append(line)
        if "frame 1/3" in line:
            break
    time.sleep(12)  # well into frame 2's 100000 steps
    child.send_signal(signal.SIGTERM)
    rest = child.communicate(timeout=300)[1]
    assert child.returncode == 143, "".join(lines) + rest
    assert "its state at frame 2 of pass 1 is in" in rest and "--resume" in rest, rest  # midway
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["frame_0001.json", "frame_0001.png",
                                                     "video.ckpt.npz"]
    first = (out / "frame_0001.png").read_bytes()
    done = jstyle(*args, "--steps=3", "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (out / "frame_0001.png").read_bytes() == first
    record = json.loads((out / "video.json").read_text())
    steps = [f["steps"] for f in record["frames"]]
    assert steps[0] == 3 and steps[1] > 3 and steps[2] == 3  # frame 2 went on from its state
    assert [f["tied_to"] for f in record["frames"]] == [[], [1], [2]]
    for t in (1, 2, 3):
        frame = json.loads((out / f"frame_{t:04d}.json").read_text())
        assert frame["frame"] == t and frame["method"] == "video"
    decoded, fps = clips.read(out / "video.mp4")
    assert len(decoded) == 3 and decoded[0].shape == (36, 48, 3) and fps == clips.DEFAULT_FPS
    assert not (out / "video.ckpt.npz").exists()


def test_a_signal_during_a_computation_that_cannot_stop_is_noticed_and_a_second_ends_it():
    """The main thread inside one long C call cannot run Python's handler: the watchdog says
    so at once, and a second SIGTERM ends the process with SIGTERM's status."""
    import signal
    code = ("from jstyle.system import interrupt; interrupt.install('probe'); import numpy as np; "
            "a = np.random.default_rng(0).normal(size=(4000, 4000)); print('ready', flush=True);"
            " np.linalg.eigvals(a)")  # seconds in LAPACK, which releases the GIL
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        time.sleep(1.0)  # into the call
        child.send_signal(signal.SIGTERM)
        notice = child.stderr.readline()
        assert notice.startswith("probe: SIGTERM came during a computation that cannot stop "
                                 "midway; the run stops when it ends"), notice
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 143
        assert child.stderr.read().startswith("probe: interrupted again; stopped at once")
    finally:
        child.kill()
