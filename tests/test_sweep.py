"""Sweeps: K Gatys points as one vmapped program give each point's own single run."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import image, sweep
from jstyle.errors import InputError
from jstyle.engine.session import Session
from jstyle.methods import gatys

CONTENT_PATH, STYLE_PATH = image.sample_paths()
CONTENT, STYLE = image.load(CONTENT_PATH, 64), image.load(STYLE_PATH, 64)
POINTS = [
    gatys.GatysParams(),
    gatys.GatysParams(content_weight=0.1, style_weight=100.0, tv_weight=0.01),
    gatys.GatysParams(style_layers=("relu1_1", "relu2_1"), style_layer_weights=(1.0, 2.0)),
]


def test_stack_maps_points_onto_the_union_of_layers():
    batched = sweep.stack(POINTS)
    assert batched.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    np.testing.assert_array_equal(batched.style_layer_weights[1], [1.0, 1.0, 2.0])
    np.testing.assert_array_equal(batched.style_layer_weights[4], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(batched.style_weight, [10.0, 100.0, 10.0])
    with pytest.raises(InputError, match="must share pooling"):
        sweep.stack([gatys.GatysParams(), gatys.GatysParams(pooling="avg")])


@pytest.mark.parametrize("optimizer,steps", [("adam", 4), ("lbfgs", 3)])
def test_vmapped_points_match_their_single_runs(tiny_weights, optimizer, steps):
    opts = gatys.RunOptions(size=48, steps=steps, optimizer=optimizer, tol=0.0)
    rng = np.random.default_rng(0)
    content = image.to_levels(image.resize_to_edge(CONTENT, 48))
    inits = np.stack([np.clip(content + rng.normal(0, 20, content.shape), 0, 255)
                      for _ in POINTS]).astype(np.float32)
    problem = sweep.setup(CONTENT, [STYLE], POINTS, opts, tiny_weights, inits)
    state = problem.chunk(problem.state, jnp.int32(steps), problem.data)
    assert state.image.shape == (3,) + content.shape
    terms = problem.terms(state.image, problem.data)
    for k, point in enumerate(POINTS):
        single = gatys.setup(CONTENT, [STYLE], point, opts, tiny_weights, jax.random.key(0),
                             init=inits[k])
        alone = single.chunk(single.state, jnp.int32(steps), single.data)
        np.testing.assert_allclose(state.image[k], alone.image, atol=0.05)
        np.testing.assert_allclose(terms["total"][k], single.terms(alone.image, single.data)[
            "total"], rtol=1e-3)


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from jstyle import image, sweep
from jstyle.nets import weights
from jstyle.methods import gatys
assert jax.device_count() == 8
content, style = (image.load(p, 48) for p in image.sample_paths())
points = [gatys.GatysParams(style_weight=10.0 ** (k - 3)) for k in range(8)]
opts = gatys.RunOptions(size=32, steps=2, optimizer="adam", tol=0.0)
inits = np.stack([image.to_levels(image.resize_to_edge(content, 32))] * 8).astype(np.float32)
problem = sweep.setup(content, [style], points, opts, weights.load(), inits)
plain = problem.chunk(jax.tree.map(jnp.copy, problem.state), jnp.int32(2), problem.data)
spread = sweep.shard(problem)
assert len(spread.state.image.sharding.device_set) == 8
sharded = problem.chunk(spread.state, jnp.int32(2), spread.data)
assert len(sharded.image.sharding.device_set) == 8
# 8-bit levels: sharded XLA sums in another order (0.0016 levels measured with jaxlib 0.10.2)
np.testing.assert_allclose(sharded.image, plain.image, atol=1e-2)
print("same on 8 devices")
"""


def test_sweep_shards_over_8_devices_with_the_same_results(vgg_weights):
    import os
    import subprocess
    import sys
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    result = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same on 8 devices" in result.stdout


def _points():
    return [sweep.Point(f"beta{b:g}" + ("_noise" if i == "noise" else ""),
                        {"beta": b, "init": i},
                        gatys.GatysParams(style_weight=b, style_layers=layers,
                                          style_layer_weights=(1.0,) * len(layers)), init=i)
            for b, i, layers in ((1.0, "content", ("relu1_1",)),
                                 (100.0, "content", ("relu1_1", "relu2_1")),
                                 (1.0, "noise", ("relu1_1",)))]


def test_run_writes_the_workdir_and_recomputes_only_missing_or_corrupt_points(
        tmp_path, vgg_weights, capfd):
    from jstyle import results
    opts = gatys.RunOptions(size=32, steps=4, optimizer="adam", tol=0.0, print_every=2)
    axes = {"beta": [1.0, 100.0], "init": ["content", "noise"]}
    run = lambda: sweep.run(tmp_path, CONTENT, [STYLE], _points(), opts, vgg_weights,
                            axes=axes, batch_size=2)
    run()
    assert "3 of its 3 points to compute" in capfd.readouterr().err
    metrics = results.load_metrics(tmp_path)
    assert len(metrics) == 3 * 3  # steps 0, 2, 4 of each point
    assert set(metrics["point"]) == {p.name for p in _points()}
    assert {"content", "style", "tv", "total", "hyperparameters.style_weight"} <= set(metrics)
    points = results.load_points(tmp_path).set_index("point")
    assert (points["steps"] == 4).all()
    # the losses fell, and the image is the one recorded
    first, last = metrics[metrics["step"] == 0], metrics[metrics["step"] == 4]
    assert (last["total"].to_numpy() < first["total"].to_numpy()).all()
    with np.load(tmp_path / "sweep.npz") as npz:
        assert list(npz["axes"]) == ["beta", "init"] and npz["grid__total"].shape == (2, 2)
        np.testing.assert_allclose(npz["final__total"], last["total"], rtol=1e-6)
        assert np.isnan(npz["grid__total"][1, 1])  # no point at beta 100 from noise
    sheet = image.load(tmp_path / "contact_sheet.png")
    assert sheet.shape[1] == 3 * 160  # the row label and two columns
    kept = tmp_path / "points" / "beta1.json"
    stamp = kept.stat().st_mtime_ns
    before = image.load(tmp_path / "images" / "beta100.png")
    (tmp_path / "images" / "beta100.png").write_bytes(b"truncated")  # corrupt
    (tmp_path / "points" / "beta1_noise.json").unlink()  # never finished
    run()
    assert "2 of its 3 points to compute" in capfd.readouterr().err
    assert kept.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(image.load(tmp_path / "images" / "beta100.png"), before,
                               atol=2 / 255)
    assert len(results.load_points(tmp_path)) == 3
    run()
    assert "0 of its 3 points to compute" in capfd.readouterr().err


def test_a_point_of_another_sweep_is_refused_not_replaced(tmp_path, tiny_weights):
    """A finished point of the same name made with other settings (here: other steps)."""
    from jstyle import results
    opts = gatys.RunOptions(size=32, steps=2, optimizer="adam")
    other = {"point": _points()[0].describe(), "options": {"steps": 99}}
    (tmp_path / "images").mkdir()
    (tmp_path / "points").mkdir()
    results.write_point(tmp_path, other, np.zeros((8, 8, 3), np.float32))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="holds point beta1 of another sweep .*differs in "
                                         ".*options.*give a new --workdir"):
        sweep.run(tmp_path, CONTENT, [STYLE], _points(), opts, tiny_weights, axes={})
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_run_rejects_bad_points(tmp_path, vgg_weights):
    opts = gatys.RunOptions(size=32, steps=2, optimizer="adam")
    twice = [_points()[0], _points()[0]]
    with pytest.raises(InputError, match="share a name"):
        sweep.run(tmp_path, CONTENT, [STYLE], twice, opts, vgg_weights, axes={})
    with pytest.raises(InputError, match="not a file name"):
        sweep.run(tmp_path, CONTENT, [STYLE], [sweep.Point("a/b", {}, gatys.GatysParams())],
                  opts, vgg_weights, axes={})


def test_a_sweep_of_another_method_matches_its_single_runs(tiny_weights):
    """The sweep is generic: CNNMRF points differing in weights and layers, on the tiny VGG."""
    from jstyle.methods import mrf
    hp = mrf.PRESETS["cnnmrf"][0]
    points = [hp, dataclasses.replace(hp, mrf_weight=1e-3, content_weight=5.0),
              dataclasses.replace(hp, mrf_layers=("relu3_1",), mrf_layer_weights=(2.0,))]
    opts = dataclasses.replace(mrf.PRESETS["cnnmrf"][1], size=64, steps=2, pyramid_levels=1)
    content = image.to_levels(image.resize_to_edge(CONTENT, 64))
    inits = np.stack([content] * 3).astype(np.float32)
    problem = sweep.setup(CONTENT, [STYLE], points, opts, tiny_weights, inits, method=mrf)
    assert problem.data.hp.mrf_layers == ("relu3_1", "relu4_1")
    state = problem.chunk(problem.state, jnp.int32(2), problem.data)
    for k, point in enumerate(points):
        single = mrf.setup(CONTENT, [STYLE], point, opts, tiny_weights, jax.random.key(0),
                           init=inits[k])
        alone = single.chunk(single.state, jnp.int32(2), single.data)
        np.testing.assert_allclose(state.image[k], alone.image, atol=0.05)
    with pytest.raises(InputError, match="must share patch_size"):
        sweep.stack([hp, dataclasses.replace(hp, patch_size=5)])


def test_a_sweep_too_large_for_the_memory_is_refused_before_it_writes(tmp_path, tiny_weights,
                                                                      monkeypatch):
    """The batch of points vmapped together counts once per point; nothing is written."""
    from jstyle.system import memory
    opts = gatys.RunOptions(size=256, steps=2, optimizer="adam", tol=0.0)
    one, four = (sweep.memory_gib(CONTENT.shape, [STYLE], opts, k) for k in (1, 4))
    h, w = image.fit_edge(*CONTENT.shape[:2], 256)
    assert one == pytest.approx(memory.pixel_run_gib(h, w, "adam", 10), rel=1e-6)
    assert four - memory.BASE_GIB == pytest.approx(4 * (one - memory.BASE_GIB), rel=1e-6)
    big = dataclasses.replace(opts, style_scale=8.0)  # the style's targets at 2048 px
    assert sweep.memory_gib(CONTENT.shape, [STYLE], big, 1) > one + 2
    monkeypatch.setattr(memory, "available_gib", lambda: (one + four) / 2)
    points = [sweep.Point(f"p{k}", {"k": k}, gatys.GatysParams(style_weight=10.0 ** k))
              for k in range(4)]
    workdir = tmp_path / "sweep"
    with pytest.raises(InputError, match=r"needs about .* GiB of memory, .*; lower "
                                         r"--batch_size or --size"):
        sweep.run(workdir, CONTENT, [STYLE], points, opts, tiny_weights, axes={"k": [0, 1, 2, 3]},
                  batch_size=4, session=Session(progress=False))
    assert not workdir.exists()

    def reached(problem):  # a batch of one fits: the sweep goes on to its work
        raise RuntimeError("reached the work")
    monkeypatch.setattr(sweep, "shard", reached)
    with pytest.raises(RuntimeError, match="reached the work"):
        sweep.run(workdir, CONTENT, [STYLE], points, opts, tiny_weights, axes={"k": [0, 1, 2, 3]},
                  batch_size=1, session=Session(progress=False))
    assert (workdir / "config.json").exists()


def test_a_coarse_to_fine_sweep_gives_each_point_its_single_coarse_to_fine_run(tmp_path,
                                                                               tiny_weights):
    """Levels as a single run has them (options.pyramid): each level of a batch starts from
    the previous level's images, upsampled; the record lists the levels and the steps taken."""
    from jstyle import results
    opts = gatys.RunOptions(size=48, pyramid_levels=2, pyramid_steps=(3, 2), steps=2,
                            optimizer="adam", tol=0.0, print_every=0)
    points = [sweep.Point(f"p{k}", {"k": k}, hp) for k, hp in enumerate(POINTS[:2])]
    sweep.run(tmp_path, CONTENT, [STYLE], points, opts, tiny_weights, axes={"k": [0, 1]},
              batch_size=2, session=Session(progress=False))
    for point in points:
        single = gatys.run(jax.random.key(0), gatys.Inputs(CONTENT, [STYLE]), point.hp, opts,
                           tiny_weights, session=Session(progress=False))
        record = results.read_json(tmp_path / "points" / f"{point.name}.json")
        assert record["levels"] == [{"size": 24, "steps": 3}, {"size": 48, "steps": 2}]
        assert record["steps"] == 5 and [h["level"] for h in record["history"]] == [0, 0, 1, 1]
        np.testing.assert_allclose(image.load(tmp_path / "images" / f"{point.name}.png"),
                                   single.images["output"], atol=2 / 255)
