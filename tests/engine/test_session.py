"""The run session and the one checkpoint format: what every method's run stands on."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jstyle.engine import checkpoint, session
from jstyle.engine.options import RunOptions
from jstyle.engine.session import Result, Session
from jstyle.errors import InputError


def test_a_checkpoint_holds_any_pytree_named_arrays_and_its_record(tmp_path):
    path = tmp_path / "run.ckpt.npz"
    state = {"a": jnp.arange(3, dtype=jnp.int32), "b": (jnp.ones((2, 2)), jnp.float32(4))}
    checkpoint.save(path, state, {"made": {"x": (1, 2)}, "position": {"step": 7}},
                    {"pass1": np.full((2, 3), 0.5, np.float32)})
    saved = checkpoint.read(path)
    assert saved.record["made"] == {"x": [1, 2]} and saved.record["position"] == {"step": 7}
    np.testing.assert_array_equal(saved.arrays["pass1"], np.full((2, 3), 0.5))
    back = checkpoint.restore(path, state)
    assert back["a"].dtype == jnp.int32 and float(back["b"][1]) == 4.0
    assert checkpoint.restore(path, {"a": jnp.arange(4)}) is None  # another shape: no fit
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match="not a readable checkpoint"):
        checkpoint.read(path)


def test_the_one_compatibility_check_names_what_differs_but_what_may_change():
    made = {"method": "gatys", "options": {"size": 64, "steps": 10}, "inputs": "abc"}
    assert checkpoint.differences(made, {**made, "options": {"size": 64, "steps": 20}},
                                  ("steps",)) == []
    assert checkpoint.differences(made, {**made, "options": {"size": 32, "steps": 10},
                                         "inputs": "def"}) == ["inputs", "options.size"]


def test_a_session_resumes_only_its_own_run_and_records_one_schema(tmp_path):
    out = tmp_path / "out.png"
    first = Session(output=out, progress=False)
    assert first.begin({"method": "m", "options": {"size": 8}}, total=4) is None
    first.history.append({"step": 2, "total": 1.0})
    first.save({"step": 2}, {"x": jnp.zeros(3)}, {"kept": np.ones(2)})
    assert first.checkpoint == tmp_path / "out.ckpt.npz" and first.checkpoint.exists()
    again = Session(output=out, progress=False)
    assert again.begin({"method": "m", "options": {"size": 8}}, total=4) == {"step": 2}
    assert again.history == [{"step": 2, "total": 1.0}] and "kept" in again.arrays
    with pytest.raises(InputError, match="made by another run .*options.size"):
        Session(output=out, progress=False).begin({"method": "m", "options": {"size": 9}},
                                                  total=4)
    with pytest.raises(InputError, match="beyond the 1 steps asked"):
        again.within({"step": 2}, 1)
    result = again.result({"output": np.zeros((2, 2, 3), np.float32)}, steps=2)
    for key in ("method", "options", "steps", "seconds", "backend", "device", "versions"):
        assert key in result.record, key
    with pytest.raises(session.Stopped) as stopped:
        raise again.stopped("step 2")
    assert stopped.value.position == "step 2" and stopped.value.checkpoint == again.checkpoint


def test_write_puts_images_and_record_down_together_never_over_an_input(tmp_path):
    out = tmp_path / "out.png"
    (tmp_path / "out.ckpt.npz").write_bytes(b"left by the run")
    result = Result({"output": np.zeros((4, 5, 3), np.float32),
                     "b": np.ones((4, 5, 3), np.float32)}, {"method": "m"}, [{"step": 1}])
    paths = Session(output=out, about={"command": ["jstyle"]}).write(result)
    assert paths == {"output": out, "b": tmp_path / "out_b.png"}
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["command"] == ["jstyle"] and record["history"] == [{"step": 1}]
    assert not (tmp_path / "out.ckpt.npz").exists()  # the finished result replaces it
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"a photo")
    with pytest.raises(InputError):
        Session(output=photo, reads=[("--content", photo)]).write(result)
    assert photo.read_bytes() == b"a photo"


def test_the_output_plan_names_snapshots_across_levels():
    assert session.snapshot_steps([10, 10], 4) == [4, 8, 14, 18]
    assert session.snapshot_steps([10], 0) == []
    plan = session.planned(__import__("pathlib").Path("a/out.png"), "run", ("output", "b"),
                           resumable=True, snapshots=[4])
    assert [p.name for p in plan] == ["out.png", "out_b.png", "out.json", "out.ckpt.npz",
                                      "out_4.png"]


def test_an_optimisation_reports_snapshots_and_checkpoints_every_save_every(tmp_path,
                                                                           tiny_weights):
    import jax
    from jstyle.methods import gatys
    content = np.random.default_rng(0).uniform(size=(40, 40, 3)).astype(np.float32)
    opts = RunOptions(size=40, steps=4, optimizer="adam", print_every=2, save_every=2, tol=0.0)
    result = gatys.run(jax.random.key(0), gatys.Inputs(content, [content[::-1]]),
                       gatys.GatysParams(), opts, tiny_weights,
                       session=Session(output=tmp_path / "o.png", progress=False))
    assert (tmp_path / "o_2.png").exists() and (tmp_path / "o.ckpt.npz").exists()
    assert [h["step"] for h in result.history] == [2, 4]


def test_the_record_of_what_made_a_run_has_one_schema():
    from jstyle.methods import gatys
    weights = type("W", (), {"digest": "w1"})()
    content = np.zeros((4, 5, 3), np.float32)
    made = session.made("gatys", gatys.GatysParams(), RunOptions(size=8), weights, [content],
                        levels=[{"size": 8, "steps": 3}])
    assert list(made) == ["method", "hyperparameters", "options", "weights", "inputs", "levels"]
    assert made["options"]["size"] == 8 and made["weights"] == "w1"
    assert made["inputs"] != session.made("gatys", None, {}, None, [content + 1])["inputs"]
    bare = session.made("fast", None, {"size": 0}, None, [content])
    assert list(bare) == ["method", "options", "inputs"]  # no hyperparameters, no VGG


def test_an_interruption_names_a_checkpoint_only_when_one_is_on_disk(tmp_path):
    fresh = Session(output=tmp_path / "a.png", progress=False)
    fresh.begin({"method": "m"}, total=4)
    with pytest.raises(session.Stopped) as stopped:
        with fresh.running():
            raise KeyboardInterrupt  # before anything was saved: a level's setup, say
    assert stopped.value.checkpoint is None
    fresh.save({"step": 2})
    with pytest.raises(session.Stopped) as stopped:
        with fresh.running():
            raise KeyboardInterrupt
    assert stopped.value.checkpoint == tmp_path / "a.ckpt.npz"
    assert stopped.value.position == "step 2"


def test_snapshots_keep_the_planned_names_when_a_level_converges_early(tmp_path, tiny_weights):
    import jax
    from jstyle.methods import gatys
    content = np.random.default_rng(1).uniform(size=(40, 40, 3)).astype(np.float32)
    # a tolerance every step meets: each level stops after its first comparison
    opts = RunOptions(size=40, pyramid_levels=2, pyramid_steps=(6, 6), optimizer="adam",
                      print_every=2, save_every=2, tol=1e9, tol_interval=2)
    result = gatys.run(jax.random.key(0), gatys.Inputs(content, [content[::-1]]),
                       gatys.GatysParams(), opts, tiny_weights,
                       session=Session(output=tmp_path / "o.png", progress=False))
    assert result.record["steps"] < 12  # the levels did converge early
    written = sorted(p.name for p in tmp_path.glob("o_*.png"))
    planned = {f"o_{s}.png" for s in session.snapshot_steps([6, 6], 2)}
    assert written and set(written) <= planned, (written, planned)
