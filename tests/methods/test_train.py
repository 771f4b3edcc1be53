"""Training the fast style network: the loss falls, resume is exact, export round-trips, bad
folders and model files are clear errors."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import image
from jstyle.methods.fast import train
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


def test_sigterm_keeps_the_last_step_and_resume_continues_then_stylise(tmp_path, photos,
                                                                        vgg_weights):
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
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 143, err[-2000:]
    stopped = _metrics(workdir)[-1]["step"]
    assert err.strip().splitlines()[-1] == (
        f"jstyle: interrupted by SIGTERM; its state at step {stopped} is in "
        f"{workdir / 'checkpoints'}: rerun the same command with --resume to continue")
    assert train.checkpoint_steps(workdir)[-1] == stopped
    assert 3 <= stopped < 500 and not (workdir / "model.msgpack").exists()
    again = subprocess.run([*train_cmd, "--steps=500"], capture_output=True, text=True,
                           timeout=300)  # without --resume: refused, nothing lost
    assert again.returncode == 2 and "holds an earlier training" in again.stderr
    assert train.checkpoint_steps(workdir)[-1] == stopped
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
    assert record["memory"]["estimated_peak_gib"] > 0
    assert image.load(out / "photo0.png").shape == image.load(photos / "photo0.png").shape
    bad = subprocess.run([sys.executable, "-m", "jstyle", "--method=fast",
                          f"--model={photos / 'photo0.png'}", f"--content={photos}",
                          f"--output={out}"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "not a jstyle fast-style model" in bad.stderr


TINY = train.TrainParams(width=0.25, batch_size=1, size=32, style_size=32)


def _state(folder):
    """Every file under `folder` with its bytes."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _interrupt_when_loss_is_prepared(monkeypatch):
    """Ctrl-C or SIGTERM (as `interrupt.defer`'s event) while the training starts up."""
    from jstyle.system import interrupt
    events = []
    monkeypatch.setattr(interrupt, "defer", lambda event: events.append(event) or (lambda: None))
    prepare = train.prepare_loss
    monkeypatch.setattr(train, "prepare_loss",
                        lambda *a, **k: events[-1].set() or prepare(*a, **k))


def test_an_interruption_during_start_up_saves_nothing_and_changes_nothing(
        tmp_path, photos, tiny_weights, monkeypatch):
    fresh = tmp_path / "fresh"
    with monkeypatch.context() as patch:
        _interrupt_when_loss_is_prepared(patch)
        with pytest.raises(train.Stopped) as stopped:
            train.train(_style(), photos, fresh, TINY, tiny_weights, steps=5, progress=False)
    assert stopped.value.checkpoint is None  # nothing was saved
    assert not fresh.exists()

    resumed = tmp_path / "resumed"
    train.train(_style(), photos, resumed, TINY, tiny_weights, steps=2, log_every=1,
                progress=False)
    before = _state(resumed)
    with monkeypatch.context() as patch:
        _interrupt_when_loss_is_prepared(patch)
        with pytest.raises(train.Stopped) as stopped:
            train.train(_style(), photos, resumed, TINY, tiny_weights, steps=5, resume=True,
                        progress=False)
    assert stopped.value.position == "step 2"
    assert stopped.value.checkpoint == resumed / "checkpoints"
    assert _state(resumed) == before


def test_a_diverged_training_keeps_its_last_finite_step_and_exports_nothing(
        tmp_path, photos, tiny_weights):
    hp = train.TrainParams(**{**TINY.__dict__, "learning_rate": 1e30})
    with pytest.raises(InputError, match=r"the training diverged: the loss became (nan|inf) at "
                                         r"step (\d+); .* holds the last finite state \(step "):
        train.train(_style(), photos, tmp_path, hp, tiny_weights, steps=10, log_every=1,
                    progress=False)
    assert not (tmp_path / "model.msgpack").exists()
    last = _metrics(tmp_path)[-1]["step"]
    assert train.checkpoint_steps(tmp_path)[-1] == last < 10
    assert all(np.isfinite(l["total"]) for l in _metrics(tmp_path))

    graphdef, state = train.init_state(TINY, __import__("jax").random.key(0))
    nan = __import__("jax").tree.map(lambda x: jnp.full_like(x, jnp.nan), state.params)
    train.export(tmp_path / "nan.msgpack", nan, {"hyperparameters": {"width": 0.25}})
    with pytest.raises(InputError, match="holds NaN or infinite weights"):
        train.load_model(tmp_path / "nan.msgpack")


def test_a_failing_batch_thread_ends_the_wait_with_its_reason(tmp_path, photos, monkeypatch):
    """A thread that dies (here of MemoryError) is reported, and Ctrl-C or SIGTERM (the event)
    end a wait for a batch: neither hangs the training."""
    import concurrent.futures
    import threading

    import jax
    def no_memory(self, step):
        raise MemoryError
    monkeypatch.setattr(train.Batches, "make", no_memory)
    paths = train.photo_paths(photos)
    batches = train.Batches(paths, jax.random.key(0), 2, 32)
    pool = concurrent.futures.ThreadPoolExecutor(1)  # a hang fails the test, not waits forever
    try:
        with pytest.raises(InputError, match="memory ran out while preparing a batch of 2 "
                                             "crops of 32 px; lower --size or --batch_size"):
            pool.submit(batches.get).result(timeout=120)
        batches.close()
        monkeypatch.setattr(train.Batches, "make", lambda self, step: threading.Event().wait())
        stop = threading.Event()
        stop.set()
        waiting = train.Batches(paths, jax.random.key(0), 2, 32)
        assert pool.submit(waiting.get, stop).result(timeout=120) is None
        waiting.stop.set()  # its thread waits forever in make: a daemon, left behind
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_preflight_refuses_before_anything_is_written(tmp_path, photos, monkeypatch):
    from jstyle.system import memory
    earlier = tmp_path / "earlier"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "checkpoints" / "7.npz").write_bytes(b"")
    (earlier / "metrics.jsonl").write_text("")
    check = lambda workdir, steps=10, resume=False: train.preflight(
        photos, workdir, TINY, steps=steps, resume=resume)
    with pytest.raises(InputError, match=r"holds an earlier training \(checkpoints at step 7, "
                                         r"metrics.jsonl\); rerun with --resume"):
        check(earlier)
    with pytest.raises(InputError, match="at step 7, past --steps=5; give --steps=7 or more"):
        check(earlier, steps=5, resume=True)
    assert check(earlier, resume=True).resume_step == 7
    with pytest.raises(InputError, match="holds no checkpoint to continue from; run without "
                                         "--resume to start"):
        check(tmp_path / "new", resume=True)
    assert check(tmp_path / "new").resume_step is None
    (earlier / "checkpoints" / "7.npz").unlink()
    with pytest.raises(InputError, match="holds no checkpoint to continue from; it holds "
                                         "metrics.jsonl of an earlier training"):
        check(earlier, resume=True)
    monkeypatch.setattr(memory, "available_gib", lambda: 2.0)
    with pytest.raises(InputError, match="GiB of memory, but 2.0 GiB is available; lower "
                                         "--size or --batch_size"):
        train.preflight(photos, tmp_path / "new", train.TrainParams(size=512), steps=1,
                        resume=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]


def test_the_memory_estimates_match_their_measurements():
    """The peaks the estimates were calibrated on (train.py, transform_net.py)."""
    from jstyle.methods import fast
    for size, width, peak in ((128, 1.0, 1.44), (256, 1.0, 2.04), (384, 1.0, 3.05),
                              (256, 0.25, 1.91)):
        hp = train.TrainParams(size=size, batch_size=2, width=width)
        assert train.estimate_gib(hp) == pytest.approx(peak, rel=0.03)
    for edge, width, peak in ((1024, 1.0, 1.09), (2048, 1.0, 2.77), (2048, 0.25, 1.20)):
        above_base = fast.estimate_gib(edge, edge, width) - fast.memory.BASE_GIB
        assert above_base == pytest.approx(peak - 0.52, rel=0.1)


def test_fast_refuses_a_run_larger_than_the_memory_before_resizing(tmp_path, monkeypatch):
    from jstyle.system import memory
    from jstyle.methods import fast
    from jstyle.engine.options import RunOptions
    from jstyle.engine.session import Session
    graphdef, state = train.init_state(TINY, __import__("jax").random.key(0))
    train.export(tmp_path / "model.msgpack", state.params, {"hyperparameters": {"width": 0.25}})
    monkeypatch.setattr(memory, "available_gib", lambda: 1.0)
    content = np.zeros((48, 64, 3), np.float32)
    with pytest.raises(InputError, match="GiB of memory, but 1.0 GiB is available; give a "
                                         "smaller --size"):
        fast.run(__import__("jax").random.key(0),
                 fast.Inputs(content, fast.load_model(tmp_path / "model.msgpack")),
                 fast.FastParams(), RunOptions(size=8000), None, session=Session())
