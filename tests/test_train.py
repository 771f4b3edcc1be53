"""Training the fast style network: the loss falls, resume is exact, export round-trips, bad
folders and model files are clear errors."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import image, train
from jstyle.errors import InputError

HP = train.TrainParams(width=0.25, batch_size=2, size=64, style_size=64, learning_rate=1e-2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of generated photos (crops of the built-in sample, flipped and tinted) and one
    unreadable file."""
    folder = tmp_path_factory.mktemp("photos")
    content, style = (image.load(p) for p in image.sample_paths())
    rng = np.random.default_rng(0)
    for k in range(6):
        img = content[::-1] if k % 2 else content
        img = np.clip(img * rng.uniform(0.7, 1.1, 3), 0, 1)
        image.save(folder / f"photo{k}.png", img[: 200 + 10 * k, : 180 + 7 * k])
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def _style():
    return image.load(image.sample_paths()[1], 96)


def _metrics(workdir):
    return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_twenty_steps_lower_the_loss_and_skip_unreadable_files(tmp_path, photos, vgg_weights):
    train.train(_style(), photos, tmp_path, HP, vgg_weights, steps=20, log_every=1,
                progress=False)
    lines = _metrics(tmp_path)
    assert [l["step"] for l in lines] == list(range(1, 21))
    totals = [l["total"] for l in lines]
    first, last = np.mean(totals[:3]), np.mean(totals[-3:])
    assert last < 0.8 * first
    assert all(np.isfinite(l["total"]) for l in lines)
    assert lines[-1]["skipped_files"] <= 1
    assert (tmp_path / "model.msgpack").exists()


def test_resume_continues_exactly_and_export_round_trips(tmp_path, photos, vgg_weights):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    train.train(_style(), photos, whole, HP, vgg_weights, steps=8, log_every=1, progress=False)
    train.train(_style(), photos, halves, HP, vgg_weights, steps=5, log_every=1,
                progress=False)
    train.train(_style(), photos, halves, HP, vgg_weights, steps=8, log_every=1,
                resume=True, progress=False)
    a, b = _metrics(whole), _metrics(halves)
    assert [l["step"] for l in b] == list(range(1, 9))
    np.testing.assert_allclose([l["total"] for l in b], [l["total"] for l in a], rtol=1e-5)
    net_a, record = train.load_model(whole / "model.msgpack")
    net_b, _ = train.load_model(halves / "model.msgpack")
    photo = jnp.asarray(image.load(next(photos.glob("*.png")), 40)[None])
    np.testing.assert_allclose(net_a(photo), net_b(photo), atol=1e-5)
    assert record["hyperparameters"]["width"] == 0.25 and record["steps"] == 8


def test_bad_folders_and_model_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        train.photo_paths(tmp_path / "missing")
    with pytest.raises(InputError, match="holds no .jpg or .png"):
        train.photo_paths(tmp_path)
    (tmp_path / "model.msgpack").write_bytes(b"\x81\xa3abc\x01")
    with pytest.raises(InputError, match="is not a jstyle fast-style model"):
        train.load_model(tmp_path / "model.msgpack")
    with pytest.raises(InputError, match="cannot read --model"):
        train.load_model(tmp_path / "none.msgpack")


def test_train_interrupt_resume_then_stylise_from_the_command(tmp_path, photos, vgg_weights):
    import signal
    import subprocess
    import sys
    import time
    style = image.sample_paths()[1]
    workdir = tmp_path / "run"
    train_cmd = [sys.executable, "-m", "jstyle", "train", f"--style={style}",
                 f"--data_dir={photos}", f"--workdir={workdir}", "--size=48",
                 "--batch_size=2", "--width=0.25", "--print_every=1", "--save_every=0"]
    child = subprocess.Popen([*train_cmd, "--steps=500"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (workdir / "metrics.jsonl").exists() or len(_metrics(workdir)) < 3:
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130, err[-2000:]
    assert "checkpoint was saved" in err
    stopped = _metrics(workdir)[-1]["step"]
    assert 3 <= stopped < 500 and not (workdir / "model.msgpack").exists()
    resumed = subprocess.run([*train_cmd, f"--steps={stopped + 2}", "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [l["step"] for l in _metrics(workdir)] == list(range(1, stopped + 3))

    out = tmp_path / "styled"
    run = subprocess.run([sys.executable, "-m", "jstyle", "--method=fast",
                          f"--model={workdir / 'model.msgpack'}", f"--content={photos}",
                          f"--output={out}"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "1 unreadable file(s) skipped" in run.stderr
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == sorted(p.name for p in photos.glob("*.png"))  # broken.jpg: no output
    record = json.loads((out / "photo0.json").read_text())
    assert record["training"]["hyperparameters"]["width"] == 0.25
    assert image.load(out / "photo0.png").shape == image.load(photos / "photo0.png").shape
    bad = subprocess.run([sys.executable, "-m", "jstyle", "--method=fast",
                          f"--model={photos / 'photo0.png'}", f"--content={photos}",
                          f"--output={out}"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "not a jstyle fast-style model" in bad.stderr


def test_sigterm_ends_training_with_a_checkpoint(tmp_path, photos, vgg_weights):
    import signal
    import subprocess
    import sys
    import time
    workdir = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "jstyle", "train", f"--style={image.sample_paths()[1]}",
         f"--data_dir={photos}", f"--workdir={workdir}", "--size=32", "--batch_size=1",
         "--width=0.25", "--print_every=1", "--save_every=0", "--steps=500"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (workdir / "metrics.jsonl").exists() or len(_metrics(workdir)) < 2:
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("jstyle: interrupted by SIGTERM; a "
                                                    "checkpoint was saved")
    saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert max(saved) == _metrics(workdir)[-1]["step"]
