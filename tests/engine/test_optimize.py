"""The compiled optax loop on small objectives: convergence, chunks, stopping, checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle.engine import checkpoint, optimize
from jstyle.errors import InputError

TARGET = jnp.asarray(np.random.default_rng(0).uniform(10, 200, size=(5, 7, 3)), jnp.float32)


def quadratic(image, data):
    return jnp.sum(jnp.square(image - data["target"])) / image.size


def _run(name, steps, every, tol=0.0, bounds=(0.0, 255.0), objective=quadratic, start=None,
         tol_interval=1):
    opt = optimize.make_optimizer(name, learning_rate=5.0)
    chunk = optimize.make_chunk(objective, opt, linesearch="zoom" if name == "lbfgs" else None,
                                tol=tol, bounds=bounds, tol_interval=tol_interval)
    state = optimize.init(opt, jnp.full((5, 7, 3), 128.0) if start is None else start)
    seen = []
    state = optimize.run(chunk, state, {"target": TARGET}, optimize.boundaries(steps, every),
                         lambda s: seen.append(int(s.step)))
    return chunk, state, seen


@pytest.mark.parametrize("name", ["lbfgs", "adam"])
def test_converges_to_the_minimum(name):
    _, state, _ = _run(name, steps=300 if name == "adam" else 20, every=10)
    np.testing.assert_allclose(state.image, TARGET, atol=0.5 if name == "adam" else 1e-2)


@pytest.mark.parametrize("name", ["lbfgs", "adam"])
def test_later_chunks_do_not_recompile(name):
    chunk, state, seen = _run(name, steps=12, every=4)
    assert seen == [4, 8, 12]
    assert chunk._cache_size() == 1  # one compiled program served all three chunks


def test_lbfgs_without_line_search_takes_torchs_steps():
    """A small first step, lr * min(1, 1/|g|_1) * g, then curvature-scaled steps that converge
    (the objective is a quadratic whose minimum is inside the bounds)."""
    opt = optimize.make_optimizer("lbfgs", 1.0, 5, linesearch="none")
    chunk = optimize.make_chunk(quadratic, opt, linesearch=None, tol=0.0,
                                bounds=(0.0, 255.0))
    start = jnp.full((5, 7, 3), 128.0)
    grad = jax.grad(quadratic)(start, {"target": TARGET})
    first = chunk(optimize.init(opt, start), jnp.int32(1), {"target": TARGET})
    step = min(1.0, 1.0 / float(jnp.sum(jnp.abs(grad))))
    np.testing.assert_allclose(first.image, start - step * grad, rtol=1e-6)
    state = chunk(first, jnp.int32(30), {"target": TARGET})
    np.testing.assert_allclose(state.image, TARGET, atol=1e-2)
    with pytest.raises(Exception, match="--linesearch=wolfe"):
        optimize.make_optimizer("lbfgs", 1.0, linesearch="wolfe")


def test_boundaries():
    assert optimize.boundaries(10, 4) == [4, 8, 10]
    assert optimize.boundaries(10, 4, 5) == [4, 5, 8, 10]
    assert optimize.boundaries(10, 0, 0) == [10]


def test_adam_keeps_pixels_in_range():
    far = jnp.asarray(TARGET.at[0, 0, 0].set(400.0))
    _, state, _ = _run("adam", steps=50, every=50, objective=lambda x, d: quadratic(x, {
        "target": far}))
    assert float(state.image.max()) <= 255.0


def test_non_finite_loss_stops_and_keeps_the_last_good_image():
    # log(x) goes to -inf and then NaN as Adam pushes x below zero, when nothing projects it.
    objective = lambda x, d: jnp.sum(jnp.log(x))
    _, state, _ = _run("adam", steps=100, every=100, bounds=None, objective=objective,
                       start=jnp.full((2, 2, 1), 20.0))
    assert bool(state.failed)
    assert 0 < int(state.step) < 100
    assert np.all(np.isfinite(np.asarray(objective(state.good_image, None))))
    assert not np.isfinite(float(objective(state.image, None)))
    np.testing.assert_array_equal(optimize.last_good(state), state.good_image)
    batch = jax.tree.map(lambda *xs: jnp.stack(xs), state, state._replace(
        failed=jnp.bool_(False), image=jnp.full_like(state.image, 300.0)))
    last = np.asarray(optimize.last_good(batch))  # per state: the good image, or clipped
    np.testing.assert_array_equal(last[0], state.good_image)
    assert (last[1] == 255.0).all()


def test_stops_on_convergence():
    _, state, seen = _run("lbfgs", steps=500, every=500, tol=1e-6)
    assert bool(state.converged) and int(state.step) < 100


def test_convergence_compared_over_an_interval_stops_at_a_multiple_of_it():
    _, state, _ = _run("adam", steps=2000, every=2000, tol=1e-3, tol_interval=25)
    assert bool(state.converged) and int(state.step) % 25 == 1 and int(state.step) < 2000


def test_checkpoint_round_trip(tmp_path):
    _, state, _ = _run("lbfgs", steps=3, every=3)
    record = {"made": {"a": 1}, "position": {"step": 3}, "history": []}
    path = tmp_path / "ckpt.npz"
    arrays = {"pass1": np.arange(6, dtype=np.float32).reshape(2, 3)}
    checkpoint.save(path, state, record, arrays)
    like = optimize.init(optimize.make_optimizer("lbfgs", 1.0), jnp.zeros((5, 7, 3)))
    back = checkpoint.restore(path, like)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    saved = checkpoint.read(path)
    assert saved.record == record and set(saved.arrays) == {"pass1"}
    np.testing.assert_array_equal(saved.arrays["pass1"], arrays["pass1"])
    checkpoint.check_made(path, saved, {"a": 1})  # the run that made it: no error
    # another run's checkpoint is refused, naming what differs
    assert checkpoint.differences({"a": 2}, saved.record["made"]) == ["a"]
    with pytest.raises(InputError, match="made by another run .*differs in a"):
        checkpoint.check_made(path, saved, {"a": 2})
    other = optimize.init(optimize.make_optimizer("lbfgs", 1.0), jnp.zeros((4, 7, 3)))
    assert checkpoint.restore(path, other) is None  # a state of other shapes does not fit
    whole = path.read_bytes()
    for broken in (b"garbage", whole[:len(whole) // 2], whole[:-40]):  # truncated files
        path.write_bytes(broken)
        for read in (lambda: checkpoint.restore(path, like),
                     lambda: checkpoint.read(path)):
            with pytest.raises(InputError, match="is not a readable checkpoint"):
                read()


def test_ctrl_c_stops_after_the_running_chunk_with_a_state_that_can_be_saved(tmp_path):
    import os
    import signal
    opt = optimize.make_optimizer("adam", learning_rate=5.0)
    chunk = optimize.make_chunk(quadratic, opt, linesearch=None, tol=0.0, bounds=(0.0, 255.0))
    state = optimize.init(opt, jnp.full((5, 7, 3), 128.0))
    before = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN in a pytest-xdist worker
    ask = lambda s: os.kill(os.getpid(), signal.SIGINT) if int(s.step) == 4 else None
    with pytest.raises(optimize.Interrupted) as stopped:
        optimize.run(chunk, state, {"target": TARGET}, [4, 30], ask, interrupt_every=3)
    assert int(stopped.value.state.step) == 7  # the chunk running then (4 -> 7) finished
    checkpoint.save(tmp_path / "c.npz", stopped.value.state, {})  # buffers intact
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_an_interruption_that_ends_at_a_stop_still_reports_that_stop():
    import os
    import signal
    opt = optimize.make_optimizer("adam", learning_rate=5.0)
    chunk = optimize.make_chunk(quadratic, opt, linesearch=None, tol=0.0, bounds=(0.0, 255.0))
    seen = []

    def report(s):
        seen.append(int(s.step))
        if int(s.step) == 4:
            os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(optimize.Interrupted) as stopped:
        optimize.run(chunk, optimize.init(opt, jnp.full((5, 7, 3), 128.0)), {"target": TARGET},
                     [4, 6, 30], report, interrupt_every=2)
    assert int(stopped.value.state.step) == 6 and seen == [4, 6]  # step 6's snapshot is kept


def test_lbfgs_first_step_takes_the_size_given_and_saves_the_line_search_its_trials():
    """A quadratic over many elements whose minimum lies levels away (a print-size image's
    situation): optax's unit-norm first step moves each element by 1/sqrt(n), and its line
    search doubles it trial by trial; a first step of 1 RMS per element is accepted at once."""
    n = 400_000
    target = jnp.full((n,), 3.0)
    value_fn = lambda x: 0.5 * jnp.mean(jnp.square(x - target)) * 1e-3
    x = jnp.zeros((n,))

    def first_trials(first_step):
        opt = optimize.make_optimizer("lbfgs", 1.0, 10, "zoom", first_step)
        state = opt.init(x)
        value, grad = jax.value_and_grad(value_fn)(x)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=value_fn)
        return updates, int(state[-1].info.num_linesearch_steps)

    scaled, scaled_trials = first_trials(1.0)
    _, plain_trials = first_trials(None)
    assert scaled_trials < plain_trials, (scaled_trials, plain_trials)
    assert float(jnp.sqrt(jnp.mean(jnp.square(scaled)))) >= 1.0  # at least the step given
