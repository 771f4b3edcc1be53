"""The coarse-to-fine schedule: which levels run, at which sizes, for how many steps."""

import dataclasses

from jstyle.engine import options
from jstyle.engine.options import RunOptions
from jstyle.methods import gatys


def test_the_default_runs_three_levels_with_most_steps_where_they_are_cheap():
    _, opts = gatys.PRESETS["jstyle"]
    levels = options.pyramid(opts)
    assert [size for size, _ in levels] == [128, 256, 512]
    steps = [n for _, n in levels]
    assert steps == sorted(steps, reverse=True) and steps[-1] < steps[0]
    assert opts.tol > 0  # a level ends early once its loss stops moving


def test_levels_below_the_minimum_size_are_left_out_with_their_steps():
    opts = RunOptions(size=200, pyramid_levels=3, pyramid_steps=(7, 5, 3), pyramid_min_size=64)
    assert options.pyramid(opts) == [(100, 5), (200, 3)]
    assert options.pyramid(dataclasses.replace(opts, size=48)) == [(48, 3)]  # the last stays
    assert options.pyramid(dataclasses.replace(opts, pyramid_min_size=0)) == [
        (50, 7), (100, 5), (200, 3)]


def test_the_classic_preset_keeps_the_one_level_500_step_run():
    hp, opts = gatys.PRESETS["classic"]
    assert options.pyramid(opts) == [(512, 500)] and hp.tv_weight == 0.0
    assert hp.content_weight == 1.0
