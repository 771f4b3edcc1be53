"""`jstyle train --style=S --data_dir=D --workdir=W`: trains the fast method's network for one
style (jstyle.methods.fast.train), every check made before anything is loaded or written."""

from __future__ import annotations

import dataclasses
import pathlib
import sys

from jstyle import image
from jstyle.cli.arguments import (COMMON, FLAGS, TRAIN_COMMON, TRAIN_DEFAULTS, TRAIN_ONLY,
                                  given, method_flags)
from jstyle.engine import options
from jstyle.engine.options import RunOptions
from jstyle.errors import InputError
from jstyle.methods.fast import train
from jstyle.nets import weights
from jstyle.params import flag_fields
from jstyle.system import files


def train_command() -> None:
    """`jstyle train --style=S --data_dir=D --workdir=W`: trains the fast network for S."""
    defined = method_flags()
    allowed = {*TRAIN_COMMON, *TRAIN_ONLY,
               *(n for n, (_, owners) in defined.items() if "train" in owners)}
    extra = [n for n in [*COMMON, *defined] if given(n) and n not in allowed]
    if extra:
        raise InputError(f"--{extra[0]} does not apply to jstyle train; leave it out")
    for name in ("style", "data_dir", "workdir"):
        if not getattr(FLAGS, name):
            raise InputError(f"jstyle train needs --{name}; give --style=PAINTING, "
                             "--data_dir=PHOTOS and --workdir=DIR (made if missing)")
    if len(FLAGS.style) != 1:
        raise InputError("jstyle train learns one style; give one --style image")
    preset = FLAGS.preset or "pytorch-examples"
    if preset not in train.PRESETS:
        raise InputError(f"--preset={preset} is not a training preset; use one of "
                         f"{', '.join(train.PRESETS)}")
    hp = dataclasses.replace(train.PRESETS[preset], **{
        f.name: getattr(FLAGS, f.name) for f in flag_fields(train.TrainParams)
        if given(f.name)})
    opts = {n: getattr(FLAGS, n) if given(n) else d for n, d in TRAIN_DEFAULTS.items()}
    for name, value, low in (("steps", opts["steps"], 1), ("batch_size", hp.batch_size, 1),
                             ("size", hp.size, 16), ("save_every", opts["save_every"], 0),
                             ("print_every", opts["print_every"], 1)):
        options.check_at_least({name: value}, low, "give a larger whole number")
    for name in ("learning_rate", "width"):
        if not getattr(hp, name) > 0:
            raise InputError(f"--{name}={getattr(hp, name)} must be > 0; give a positive "
                             "number")
    options.check_nonnegative({n: [getattr(hp, n)] for n in ("content_weight", "style_weight",
                                                           "tv_weight")})
    options.check_size(RunOptions(size=hp.size))  # the crops' edge, as a pixel run's --size
    style = image.load(FLAGS.style[0])
    workdir = pathlib.Path(FLAGS.workdir)
    # the workdir's state, the photos and the memory, before the weights load or anything is
    # written
    plan = train.preflight(FLAGS.data_dir, workdir, hp, steps=opts["steps"],
                           resume=FLAGS.resume)
    if files.same_file(workdir, pathlib.Path(FLAGS.data_dir)):
        raise InputError(f"--workdir={workdir} is the --data_dir folder: checkpoints and the "
                         "model would mix with the photos; choose another folder")
    if workdir.is_dir():
        files.check_outputs([workdir / n for n in train.OUTPUTS],
                            [("--style", pathlib.Path(FLAGS.style[0]))]
                            + [("--data_dir", p) for p in plan.paths])
    vgg_weights = weights.load(FLAGS.vgg_weights, FLAGS.cache_dir)
    train.train(style, FLAGS.data_dir, workdir, hp, vgg_weights, steps=opts["steps"],
                seed=opts["seed"], save_every=opts["save_every"],
                log_every=opts["print_every"], resume=FLAGS.resume, plan=plan)
    print(f"jstyle: wrote {workdir / 'model.msgpack'}", file=sys.stderr)

