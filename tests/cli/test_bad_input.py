"""Every kind of bad input through the command: one line `<program>: error: <problem>; <fix>`,
the right exit status, no traceback, no input changed and no file left behind.

The cases run in parallel child processes (most fail before any network runs), each in its own
folder holding copies of the inputs.
"""

import concurrent.futures
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jstyle import image
from jstyle.system import files
from jstyle.errors import EnvironmentFault

ROOT = pathlib.Path(__file__).resolve().parents[2]
C, S, OUT = "--content=content.png", "--style=style.jpg", "--output=out.png"
BASE = (C, S, OUT, "--size=32", "--steps=1", "--print_every=0")
TRAIN = ("train", S, "--data_dir=photos", "--workdir=run")
TINY_TRAIN = ("--size=32", "--batch_size=1", "--width=0.25")  # the hyperparameters of "trained"

# (name, arguments, the message's words, setup of the folder, exit status, program)
CASES = [
    # inputs are never overwritten
    ("output is the content", (C, S, "--output=content.png"),
     "would overwrite the input --content=content.png", None),
    ("output is the style", (C, S, "--output=style.jpg", "--size=32"),
     "would overwrite the input --style=style.jpg", None),
    ("output is a hard link to the content", (C, S, "--output=link.png"),
     "would overwrite the input --content", "hardlink"),
    ("output is a symlink to the style", (C, S, "--output=sym.jpg"),
     "would overwrite the input --style", "symlink"),
    ("record is a mask", (C, S, "--output=mask.png", "--content_mask=mask.json",
                          "--style_mask=style_sem.png"), "would overwrite the input a mask",
     None),
    ("folder in, same folder out", ("--method=fast", "--model=model.msgpack",
                                   "--content=photos", "--output=photos"),
     "is the --content folder", "photos"),
    ("folder in, folder out holding the photos", ("--method=fast", "--model=model.msgpack",
                                                  "--content=photos", "--output=./photos/"),
     "is the --content folder", "photos"),
    ("read-only output", BASE, "out.png exists and is read-only", "readonly"),
    ("a directory at the record's path", BASE, "out.json is a directory", "jsondir"),
    ("output folder missing", (C, S, "--output=nowhere/out.png"), "does not exist", None),
    # memory
    ("size beyond any device", (C, S, OUT, "--size=100000"), "at most 16384 px", None),
    ("run larger than the memory", (C, S, OUT, "--size=16000"), "GiB of memory, but", None),
    ("decompression bomb", (C, "--style=bomb.png", OUT), "has too many pixels", "bomb"),
    ("style scale beyond any device", (*BASE, "--style_scale=1000"),
     "makes the style images 32000 px, beyond", None),
    ("style scale larger than the memory", (*BASE, "--style_scale=250"), "GiB of memory, but",
     None),
    ("a run larger than ulimit -v allows", ("ulimit=4000000", C, S, OUT, "--size=1024",
                                            "--tile=1"), "GiB of memory, but", None),
    ("analogy: size beyond any device", (C, S, OUT, "--method=analogy", "--size=100000"),
     "at most 16384 px", None),
    ("analogy: a run larger than the memory", (C, S, OUT, "--method=analogy", "--size=3000"),
     "GiB of memory, but", None),
    ("harmonize: size beyond any device", (C, S, OUT, "--method=harmonize", "--mask=mask.png",
                                           "--size=100000"), "at most 16384 px", None),
    # a run's own outputs
    ("folder run: two photos, one output", (S, "--content=photos", "--output=res", "--size=32"),
     "would both write", "samestem"),
    ("folder run: one photo's output is another's pass 1", (
        "--method=harmonize", "--content=photos", S, "--mask=mask.png", "--output=res"),
     "would both write", "passnames"),
    ("an earlier run's image left unreplaced", (C, S, OUT, "--method=analogy",
                                                "--directions=forward"),
     "records an earlier run whose out_b.png", "oldanalogy"),
    ("truncated checkpoint", (*BASE, "--resume"), "not a readable checkpoint", "truncckpt"),
    # odd files
    ("missing content", ("--content=missing.jpg", S, OUT), "does not exist", None),
    ("missing style", (C, "--style=style.jpg,nope.jpg", OUT),
     "--style nope.jpg does not exist", None),
    ("a stray comma in --style", (C, "--style=style.jpg,", OUT), "has an empty entry", None),
    ("output's folder is a file", (C, S, "--output=content.png/out.png"),
     "content.png is a file, not a folder", None),
    ("content is a folder", ("--content=photos", S, OUT),
     "--content=photos is a folder, so --output must be a folder", "photos"),
    ("empty style", (C, "--style=empty.jpg", OUT), "is empty", "empty"),
    ("style is text", (C, "--style=notes.txt", OUT), "not an image", "notes"),
    ("truncated style", (C, "--style=corrupt.jpg", OUT), "corrupt or truncated", "corrupt"),
    ("style is a FIFO", (C, "--style=fifo", OUT), "is a FIFO", "fifo"),
    ("style is a device", (C, "--style=/dev/zero", OUT), "is a device", None),
    ("symlink loop", (C, "--style=loop.png", OUT), "is a symbolic link loop", "loop"),
    ("dangling symlink", (C, "--style=dangling.png", OUT), "symbolic link to nothing",
     "dangling"),
    ("image too small", ("--content=tiny.png", S, OUT, "--size=8"), "needs at least 16 px",
     "tiny"),
    # values
    ("size 0", (*BASE, "--size=0"), "--size=0 must be >= 1; give", None),
    ("steps 0", (*BASE, "--steps=0"), "--steps=0 must be >= 1; give", None),
    ("style_scale 0", (*BASE, "--style_scale=0"), "--style_scale=0.0 must be > 0; give", None),
    ("save_every negative", (*BASE, "--save_every=-1"), "--save_every=-1 must be >= 0; give",
     None),
    ("print_every negative", (*BASE, "--print_every=-1"),
     "--print_every=-1 must be >= 0; give", None),
    ("pyramid_ratio 1", (*BASE, "--pyramid_ratio=1"), "--pyramid_ratio=1.0 must be > 1; give",
     None),
    ("patch_size 0", (*BASE, "--method=mrf", "--patch_size=0"),
     "--patch_size=0 must be >= 1; give", None),
    ("a float that is not", (*BASE, "--style_weight=abc"),
     "--style_weight=abc is not a number; give", None),
    ("an integer that is not", (*BASE, "--steps=ten"), "--steps=ten is not a whole number",
     None),
    ("overflowing weight", (*BASE, "--style_weight=1e400"), "--style_weight=1e400 is invalid",
     None),
    ("nan tolerance", (*BASE, "--tol=nan"), "--tol=nan is invalid; give a finite number", None),
    ("negative weight", (*BASE, "--style_weight=-5"), "style_weight=-5.0 is invalid", None),
    ("unknown layer", (*BASE, "--style_layers=relu1_1,relu9_9"), "unknown VGG-19 layer", None),
    ("empty content layers", (*BASE, "--content_layers="), "--content_layers is empty", None),
    ("empty style layers", (*BASE, "--style_layers="), "--style_layers is empty", None),
    ("blend weights count", (C, "--style=style.jpg,style.jpg", OUT,
                             "--style_blend_weights=1"), "1 --style_blend_weights for 2", None),
    ("zero learning rate", (*BASE, "--optimizer=adam", "--learning_rate=0"),
     "would leave the image unchanged", None),
    ("every weight zero", (*BASE, "--content_weight=0", "--style_weight=0", "--tv_weight=0"),
     "every loss weight is 0", None),
    ("unknown flag", (*BASE, "--colour=red"), "Unknown command line flag 'colour'", None),
    ("flag of another method", (*BASE, "--mrf_weight=1"),
     "--mrf_weight does not apply to --method=gatys", None),
    ("resume without a checkpoint", (*BASE, "--resume"), "no checkpoint", None),
    ("corrupt checkpoint", (*BASE, "--resume"), "not a readable checkpoint", "badckpt"),
    ("a fresh run over an unfinished one", BASE, "holds an unfinished run", "oldckpt"),
    ("a fresh run over an unreadable checkpoint", BASE, "not a readable checkpoint",
     "badckpt"),
    ("video: --resume of a finished run", ("--method=video", "--content=clip/frame_%04d.png",
                                           S, "--output=vid", "--resume"),
     "the run that wrote vid/frame_0001.json finished: choose another --output", "clip+oldvid"),
    ("analogy: too small after --ratio", (C, S, OUT, "--method=analogy", "--ratio=0.05"),
     "after the size limits and --ratio=0.05, but relu5_1 needs at least 16 px", None),
    ("mask flag given to analogy", (C, S, OUT, "--method=analogy", "--content_mask=mask.json"),
     "--content_mask does not apply to --method=analogy", None),
    ("two styles for analogy", (C, "--style=style.jpg,style.jpg", OUT, "--method=analogy"),
     "takes one --style image (B'), got 2", None),
    ("harmonize: an empty mask", (C, S, OUT, "--method=harmonize", "--mask=black.png"),
     "--mask marks nothing to harmonise", "black"),
    ("harmonize: a mask of another shape", (C, S, OUT, "--method=harmonize",
                                            "--mask=tiny.png"),
     "--mask is 8x8 px but the composite is 64x48", "tiny"),
    ("harmonize: a composite unlike the painting", (C, "--style=tiny.png", OUT,
                                                    "--method=harmonize", "--mask=mask.png"),
     "the composite is 64x48 px but the painting is 8x8", "tiny"),
    ("video: an unreadable video", ("--method=video", "--content=notes.mp4", S,
                                    "--output=vid"), "is not a video OpenCV can read", "mp4"),
    ("video: an empty folder", ("--method=video", "--content=photos/empty", S, "--output=vid"),
     "is a folder holding no frames", "emptyclip"),
    ("video: a pattern matching nothing", ("--method=video", "--content=f_%03d.png", S,
                                           "--output=vid"), "matches no file", None),
    ("video: flow files of another size", (
        "--method=video", "--content=clip/frame_%04d.png", S, "--output=vid", "--size=64",
        "--flow_pattern=clip/backward_[%d]_{%d}.flo",
        "--flow_weight_pattern=clip/reliable_[%d]_{%d}.pgm"),
     "clip/backward_2_1.flo is 10x8 but the working frames are 64x48; give --size=10", "clip"),
    ("video: one flow pattern without the other", (
        "--method=video", "--content=clip/frame_%04d.png", S, "--output=vid",
        "--flow_pattern=clip/backward_[%d]_{%d}.flo"),
     "--flow_pattern was given without --flow_weight_pattern; give both", "clip"),
    ("video: a missing clip", ("--method=video", "--content=missing.mp4", S, "--output=vid"),
     "--content=missing.mp4 does not exist; give a video file", None),
    ("video: a file with a % in its name is a file, not a pattern", (
        "--method=video", "--content=clip 50%.mp4", S, "--output=vid"),
     "--content=clip 50%.mp4 is not a video OpenCV can read", "pctmp4"),
    ("video: a pattern with an unknown placeholder", (
        "--method=video", "--content=f_%q.png", S, "--output=vid"),
     "--content=f_%q.png does not exist and is not a frame pattern", None),
    ("video: a pattern that is a lone %", ("--method=video", "--content=%", S, "--output=vid"),
     "--content=% does not exist and is not a frame pattern", None),
    ("video: a pattern with two placeholders", (
        "--method=video", "--content=f_%d_%d.png", S, "--output=vid"),
     "--content=f_%d_%d.png does not exist and is not a frame pattern", None),
    ("video: flow files of NaN", (
        "--method=video", "--content=clip/frame_%04d.png", S, "--output=vid", "--size=64",
        "--flow_pattern=clip/backward_[%d]_{%d}.flo",
        "--flow_weight_pattern=clip/reliable_[%d]_{%d}.pgm"),
     "clip/backward_2_1.flo holds 80 NaN or infinite flow vectors (of 80); compute the flow "
     "again", "clip+nanflow"),
    ("video: an output folder holding an earlier run's frames", (
        "--method=video", "--content=clip/frame_%04d.png", S, "--output=vid", "--size=32"),
     "--output=vid holds an earlier run's frames (vid/frame_0001.json and 7 more); choose "
     "another --output, or remove them", "clip+oldvid"),
    ("video: --resume into a folder holding another run's frames", (
        "--method=video", "--content=clip/frame_%04d.png", S, "--output=vid", "--size=32",
        "--resume"), "--output=vid holds frames that are not this run's (vid/frame_0003.json "
     "and 1 more); remove them", "clip+oldvid+vidckpt"),
    # training and experiments
    ("train workdir is a file", ("train", S, "--data_dir=photos", "--workdir=notes.txt"),
     "--workdir=notes.txt is a file; give a folder", "notes+photos"),
    ("train: a rerun over an earlier training", (*TRAIN, *TINY_TRAIN),
     "--workdir=run holds an earlier training (checkpoints at step 3, metrics.jsonl); rerun "
     "with --resume to continue it, or give a new --workdir", "photos+trained"),
    ("train: --resume with no checkpoint", (*TRAIN, "--resume"),
     "--workdir=run holds no checkpoint to continue from; run without --resume", "photos"),
    ("train: --resume over a checkpoint past --steps", (*TRAIN, *TINY_TRAIN, "--resume",
                                                       "--steps=2"),
     "the checkpoint in --workdir=run is at step 3, past --steps=2; give --steps=3 or more",
     "photos+trained"),
    ("train: --resume from a damaged checkpoint", (*TRAIN, *TINY_TRAIN, "--resume",
                                                  "--steps=5"),
     "run/checkpoints/3.npz is not a readable checkpoint", "photos+trained"),
    ("train: size beyond any device", (*TRAIN, "--size=100000"), "at most 16384 px", "photos"),
    ("train: a run larger than the memory", (*TRAIN, "--size=8000"), "GiB of memory, but",
     "photos"),
    ("train: a batch larger than the memory", (*TRAIN, "--batch_size=100000"),
     "GiB of memory, but", "photos"),
    ("train: a bad style makes no workdir", ("train", "--style=missing.jpg",
                                            "--data_dir=photos", "--workdir=run"),
     "does not exist", "photos"),
    ("train: a bad data_dir makes no workdir", ("train", S, "--data_dir=nowhere",
                                               "--workdir=run"), "is not a folder", None),
    ("train: a bad value makes no workdir", (*TRAIN, "--learning_rate=0"), "must be > 0",
     "photos"),
    ("fast: a model with NaN weights", ("--method=fast", "--model=nan.msgpack", C, OUT),
     "--model=nan.msgpack holds NaN or infinite weights", "nanmodel"),
    ("fast: a model whose finite weights overflow", ("--method=fast", "--model=huge.msgpack",
                                                     C, OUT),
     "--model=huge.msgpack makes NaN or infinite pixels", "hugemodel"),
    ("fast: size beyond any device", ("--method=fast", "--model=model.msgpack", C, OUT,
                                      "--size=100000"), "at most 16384 px", None),
    ("fast: a run larger than the memory", ("ulimit=4000000", "--method=fast",
                                            "--model=model.msgpack", C, OUT, "--size=16000"),
     "GiB of memory, but", None),
    ("sweep workdir is a file", ("@gatys_sweep.py", "--workdir=notes.txt", "--grid=quick"),
     "--workdir=notes.txt is a file; give a folder", "notes", 2, "gatys_sweep"),
    ("sweep larger than the memory", ("@gatys_sweep.py", "--workdir=w", "--grid=quick",
                                      "--size=16000"),
     "GiB of memory, but", None, 2, "gatys_sweep"),
    ("experiment: an unknown flag", ("@gatys_sweep.py", "--workdir=w", "--colour=red"),
     "Unknown command line flag 'colour'", None, 2, "gatys_sweep"),
    ("experiment: a required flag missing", ("@seed_figures.py",),
     "--workdir is required; give --workdir=", None, 2, "seed_figures"),
    ("experiment: a value not among the choices", ("@gatys_sweep.py", "--workdir=w",
                                                   "--grid=huge"),
     "--grid=huge is not one of quick, default, full", None, 2, "gatys_sweep"),
    ("experiment: an integer that is not", ("@compare_methods.py", "--workdir=w", "--size=big"),
     "--size=big is not a whole number", None, 2, "compare_methods"),
    ("experiment: a stray argument", ("@gatys_sweep.py", "--workdir=w", "extra"),
     "unexpected argument 'extra'", None, 2, "gatys_sweep"),
    ("experiment: weights that are not numbers", ("@seed_figures.py", "--workdir=w",
                                                  "--tv_weights=abc"),
     "--tv_weights=abc must be comma-separated numbers", None, 2, "seed_figures"),
    ("experiment: workdir inside a file", ("@seed_figures.py", "--workdir=notes.txt/w"),
     "which is not a folder; give a folder", "notes", 2, "seed_figures"),
    ("compare: a missing content folder", ("@compare_methods.py", "--workdir=w",
                                           "--content_dir=nope", "--style_dir=nope"),
     "--content_dir=nope is not a folder", None, 2, "compare_methods"),
    ("compare: --video_frames=0", ("@compare_methods.py", "--workdir=w", "--video_frames=0"),
     "--video_frames=0 must be >= 1", None, 2, "compare_methods"),
    ("compare: an unfinished run without --resume", (
        "@compare_methods.py", "--workdir=cmp", "--content_dir=photos", "--style_dir=styles",
        "--methods=gatys"), "cmp/images/gatys__a-s.ckpt.npz holds an unfinished run; rerun "
     "with --resume", "photos+styles+cmpckpt", 2, "compare_methods"),
    ("compare: --resume with nothing unfinished", (
        "@compare_methods.py", "--workdir=cmp", "--content_dir=photos", "--style_dir=styles",
        "--methods=gatys", "--resume"), "holds no unfinished run to continue; run without "
     "--resume", "photos+styles", 2, "compare_methods"),
    # method modules: any failure of an outside module is one line, under --help too
    ("method module raises on import", ("--method=brokenpkg.raises", C, S, OUT),
     "method module 'brokenpkg.raises' failed while importing (RuntimeError: boom", "modules"),
    ("method module raises on import, --help", ("--method=brokenpkg.raises", "--help"),
     "failed while importing (RuntimeError: boom", "modules"),
    ("method module with a syntax error", ("--method=brokenpkg.syntax", C, S, OUT),
     "method module 'brokenpkg.syntax' has a syntax error", "modules"),
    ("method module with empty PRESETS", ("--method=brokenpkg.empty", "--help"),
     "module 'brokenpkg.empty' is not a jstyle method: its PRESETS is empty", "modules"),
    ("method module whose Params is no dataclass", ("--method=brokenpkg.plain", C, S, OUT),
     "its Params is not a frozen dataclass", "modules"),
    ("method module without run", ("--method=brokenpkg.norun", C, S, OUT),
     "is not a jstyle method: it lacks run", "modules"),
    ("method module declaring a command flag", ("--method=brokenpkg.clash", C, S, OUT),
     "declares --output, a flag of the command itself", "modules"),
    ("relative method name", ("--method=.gatys", C, S, OUT),
     "method '.gatys' is not a module path", None),
    ("relative method name, --help", ("--method=.gatys", "--help"),
     "method '.gatys' is not a module path", None),
    ("compare: a relative method name", ("@compare_methods.py", "--workdir=w",
                                         "--methods=.gatys"),
     "method '.gatys' is not a module path", None, 2, "compare_methods"),
]


def _picture(path, size=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(size=(6, 8, 3)).astype(np.float32)
    Image.fromarray((image.resize(base, *size) * 255).astype(np.uint8)).save(path)


def _prepare(folder: pathlib.Path, setup: str | None, model: pathlib.Path) -> None:
    _picture(folder / "content.png")
    _picture(folder / "style.jpg", seed=1)
    _picture(folder / "mask.png", seed=2)
    _picture(folder / "style_sem.png", seed=3)
    (folder / "model.msgpack").write_bytes(model.read_bytes())
    for part in (setup or "").split("+"):
        if part == "hardlink":
            os.link(folder / "content.png", folder / "link.png")
        elif part == "symlink":
            os.symlink(folder / "style.jpg", folder / "sym.jpg")
        elif part == "photos":
            (folder / "photos").mkdir()
            _picture(folder / "photos" / "a.png")
        elif part == "readonly":
            _picture(folder / "out.png", seed=4)
            (folder / "out.png").chmod(0o444)
        elif part == "jsondir":
            (folder / "out.json").mkdir()
        elif part == "bomb":
            Image.new("L", (10000, 9000)).save(folder / "bomb.png")
        elif part == "empty":
            (folder / "empty.jpg").write_bytes(b"")
        elif part == "notes":
            (folder / "notes.txt").write_text("not an image")
        elif part == "corrupt":
            raw = (folder / "style.jpg").read_bytes()
            (folder / "corrupt.jpg").write_bytes(raw[: len(raw) // 3])
        elif part == "fifo":
            os.mkfifo(folder / "fifo")
        elif part == "loop":
            os.symlink(folder / "loop.png", folder / "loop.png")
        elif part == "dangling":
            os.symlink(folder / "gone.png", folder / "dangling.png")
        elif part == "tiny":
            _picture(folder / "tiny.png", size=(8, 8))
        elif part == "black":
            Image.new("RGB", (64, 48)).save(folder / "black.png")
        elif part == "mp4":
            (folder / "notes.mp4").write_text("not a video")
        elif part == "emptyclip":
            (folder / "photos" / "empty").mkdir(parents=True)
        elif part == "clip":
            from jstyle.ops import flow
            (folder / "clip").mkdir()
            for t in (1, 2):
                _picture(folder / "clip" / f"frame_{t:04d}.png", seed=t)
            flow.write_flo(folder / "clip" / "backward_2_1.flo", np.zeros((8, 10, 2)))
            Image.new("L", (10, 8), 255).save(folder / "clip" / "reliable_2_1.pgm")
        elif part == "nanflow":  # after "clip"
            from jstyle.ops import flow
            flow.write_flo(folder / "clip" / "backward_2_1.flo", np.full((8, 10, 2), np.nan))
        elif part == "oldvid":  # what an earlier 3-frame run left in vid/
            (folder / "vid").mkdir()
            for t in (1, 2, 3):
                _picture(folder / "vid" / f"frame_{t:04d}.png", seed=t)
                (folder / "vid" / f"frame_{t:04d}.json").write_text("{}")
            (folder / "vid" / "video.mp4").write_bytes(b"an earlier video")
            (folder / "vid" / "video.json").write_text("{}")
        elif part == "vidckpt":  # after "oldvid": that run was interrupted
            (folder / "vid" / "video.ckpt.npz").write_bytes(b"its checkpoint")
        elif part == "pctmp4":
            (folder / "clip 50%.mp4").write_text("not a video")
        elif part == "samestem":
            (folder / "photos").mkdir()
            _picture(folder / "photos" / "a.png")
            _picture(folder / "photos" / "a.jpg", seed=5)
        elif part == "passnames":
            (folder / "photos").mkdir()
            _picture(folder / "photos" / "p.png")
            _picture(folder / "photos" / "p_pass1.png", seed=5)
        elif part == "oldanalogy":  # what an earlier run with both directions wrote
            for name in ("out.png", "out_b.png"):
                _picture(folder / name, seed=6)
            (folder / "out.json").write_text('{"images": {"output": "out.png", '
                                             '"b": "out_b.png"}}')
        elif part == "truncckpt":
            np.savez(folder / "out.ckpt.npz", leaf0=np.zeros((64, 64, 3)), record=np.zeros(9))
            raw = (folder / "out.ckpt.npz").read_bytes()
            (folder / "out.ckpt.npz").write_bytes(raw[:len(raw) // 2])
        elif part == "oldckpt":  # readable: a record and nothing else
            np.savez(folder / "out.ckpt.npz", record=np.frombuffer(b'{"step": 3}', np.uint8))
        elif part == "badckpt":
            (folder / "out.ckpt.npz").write_bytes(b"not a checkpoint")
        elif part == "trained":  # the workdir of an earlier training (see `model`)
            shutil.copytree(model.parent / "run", folder / "run")
        elif part == "nanmodel":  # the model of a diverged training
            from flax import serialization
            saved = serialization.msgpack_restore(model.read_bytes())
            saved["params"] = __import__("jax").tree.map(lambda v: np.full_like(v, np.nan),
                                                         saved["params"])
            (folder / "nan.msgpack").write_bytes(serialization.msgpack_serialize(saved))
        elif part == "hugemodel":  # finite weights, times 1e30
            from flax import serialization
            saved = serialization.msgpack_restore(model.read_bytes())
            saved["params"] = __import__("jax").tree.map(lambda v: v * np.float32(1e30),
                                                         saved["params"])
            (folder / "huge.msgpack").write_bytes(serialization.msgpack_serialize(saved))
        elif part == "styles":
            (folder / "styles").mkdir()
            _picture(folder / "styles" / "s.png", seed=7)
        elif part == "cmpckpt":  # compare_methods stopped during gatys on photos/a x styles/s
            (folder / "cmp" / "images").mkdir(parents=True)
            (folder / "cmp" / "images" / "gatys__a-s.ckpt.npz").write_bytes(b"its checkpoint")
        elif part == "modules":
            _broken_methods(folder / "brokenpkg")


INPUTS = "from typing import NamedTuple\nclass Inputs(NamedTuple):\n    pass\n"
BROKEN_METHODS = {  # module -> source: each breaks the method contract (jstyle.methods) once
    "raises": 'raise RuntimeError("boom")\n',
    "syntax": "def run(:\n",
    "empty": "from dataclasses import dataclass\n@dataclass(frozen=True)\nclass Params:\n"
             "    pass\nPRESETS = {}\nvalidate = run = print\n" + INPUTS,
    "plain": "from jstyle.engine.options import RunOptions\nclass Params:\n    pass\n"
             "PRESETS = {'a': (Params(), RunOptions())}\nvalidate = run = print\n" + INPUTS,
    "norun": "from dataclasses import dataclass\nfrom jstyle.engine.options import RunOptions\n"
             "@dataclass(frozen=True)\nclass Params:\n    pass\n"
             "PRESETS = {'a': (Params(), RunOptions())}\nvalidate = print\n" + INPUTS,
    "clash": "from dataclasses import dataclass\nfrom jstyle.params import field\n"
             "from jstyle.engine.options import RunOptions\n@dataclass(frozen=True)\nclass Params:\n"
             "    output: str = field('x', 'A field named as a flag of the command.')\n"
             "PRESETS = {'a': (Params(), RunOptions())}\nvalidate = print\n"
             "def run(key, inputs, hp, opts, weights, *, session):\n    pass\n" + INPUTS,
}


def _broken_methods(package: pathlib.Path) -> None:
    """The package of BROKEN_METHODS, compiled now: importing it then writes no file."""
    import compileall
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in BROKEN_METHODS.items():
        (package / f"{name}.py").write_text(source)
    compileall.compile_dir(package, quiet=2)


def _state(folder: pathlib.Path) -> dict[str, str]:
    """Every entry of the folder (recursively) with its content's hash (FIFOs and links by
    name)."""
    found = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink() or not p.is_file():
            found[str(p.relative_to(folder))] = "-"
        else:
            found[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def _command(args: tuple[str, ...]) -> list[str]:
    if args[0].startswith("ulimit="):  # the command under `ulimit -v` (KiB)
        return ["bash", "-c", f'ulimit -v {args[0][7:]} && exec "$@"', "bash",
                *_command(args[1:])]
    if args[0].startswith("@"):
        return [sys.executable, str(ROOT / "experiments" / args[0][1:]), *args[1:]]
    return [sys.executable, "-m", "jstyle", *args]


@pytest.fixture(scope="module")
def model(tmp_path_factory, vgg_weights):
    """A tiny fast-style model file (exported from an untrained network), and beside it run/,
    what an earlier `jstyle train` with TINY_TRAIN on the cases' style.jpg left: its
    config.json, metrics.jsonl and a checkpoint at step 3, whose files are damaged."""
    from jstyle import results
    from jstyle.methods.fast import train
    hp = train.TrainParams(width=0.25)
    graphdef, state = train.init_state(hp, __import__("jax").random.key(0))
    path = tmp_path_factory.mktemp("model") / "model.msgpack"
    train.export(path, state.params, {"hyperparameters": {"width": 0.25}, "steps": 0})
    run = path.parent / "run"
    (run / "checkpoints").mkdir(parents=True)
    _picture(path.parent / "style.jpg", seed=1)
    record = train._record(train.TrainParams(size=32, batch_size=1, width=0.25),
                           results.array_digest(image.load(path.parent / "style.jpg")),
                           vgg_weights, 0)
    results.write_json(run / "config.json", {"record": record})
    (run / "metrics.jsonl").write_text('{"step": 3}\n')
    (run / "checkpoints" / "3.npz").write_text("damaged")
    return path


def test_every_bad_input_is_one_line_with_its_fix_and_leaves_everything_as_it_was(
        tmp_path, model):
    def one(index_case):
        index, case = index_case
        name, args, words, setup, *rest = case
        status, program = (rest + [2, "jstyle"])[:2] if rest else (2, "jstyle")
        folder = tmp_path / f"case{index}"
        folder.mkdir()
        _prepare(folder, setup, model)
        before = _state(folder)
        done = subprocess.run(_command(args), cwd=folder, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)
        return name, words, status, program, done, before, _state(folder)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(one, enumerate(CASES)))
    problems = []
    for name, words, status, program, done, before, after in outcomes:
        lines = done.stderr.strip().splitlines()
        last = lines[-1] if lines else ""
        if done.returncode != status:
            problems.append(f"{name}: exit {done.returncode}, not {status}: {done.stderr[-600:]}")
        elif len([l for l in lines if "error" in l]) != 1 or not last.startswith(
                f"{program}: error: ") or "; " not in last or "Traceback" in done.stderr:
            problems.append(f"{name}: not one error line with a fix: {done.stderr[-600:]}")
        elif words not in last:
            problems.append(f"{name}: {words!r} not in {last!r}")
        elif after != before:
            problems.append(f"{name}: files changed: {set(after.items()) ^ set(before.items())}")
    assert not problems, "\n".join(problems)


def test_help_into_a_closed_pipe_is_quiet(tmp_path):
    reader = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    done = subprocess.run([sys.executable, "-m", "jstyle", "--help"], stdout=reader.stdin,
                          stderr=subprocess.PIPE, text=True, timeout=300)
    reader.stdin.close()
    reader.wait()
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_an_image_and_its_record_are_written_together_or_not_at_all(tmp_path, monkeypatch):
    """A disk that fills up while the second file is renamed: neither file stays, nor any
    temporary file."""
    real = os.replace
    calls = []

    def full(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(EnvironmentFault, match="No space left on device.*nothing of this result "
                                               "was kept"):
        files.write_together({tmp_path / "out.png": b"image", tmp_path / "out.json": b"{}"})
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_output_is_refused_for_an_ordinary_user_too(tmp_path, model):
    """As `nobody`, where this machine lets the tests switch user (they run as root here)."""
    if os.geteuid() != 0:
        pytest.skip("not root: cannot switch to an unprivileged user to test as one")
    _prepare(tmp_path, "readonly", model)
    for p in [tmp_path, *tmp_path.iterdir()]:
        p.chmod(p.stat().st_mode | 0o055)
    os.chmod(tmp_path, 0o777)
    before = _state(tmp_path)
    try:
        done = subprocess.run(_command(BASE), cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, user="nobody", env={**os.environ,
                                                               "HOME": str(tmp_path)})
    except (PermissionError, KeyError, OSError) as e:
        pytest.skip(f"cannot run as nobody here ({e})")
    if "Permission denied" in done.stderr and "python" in done.stderr.lower():
        pytest.skip("the interpreter is not readable by nobody on this machine")
    assert done.returncode == 2 and "out.png exists and is read-only" in done.stderr, \
        done.stderr[-1000:]
    assert _state(tmp_path) == before
