"""`jstyle [--method=M] --content=... --style=... --output=...`: every check on the flags and
files before anything is loaded or written, the method's Inputs filled from the flags of its
input kinds (jstyle.engine.kinds), a run session per output (jstyle.engine.session), which keeps
checkpoints and snapshots and writes each result with its record.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import sys

from jstyle import image, methods
from jstyle.cli.arguments import COMMON, FLAGS, TRAIN_ONLY, build_config, given, takes
from jstyle.engine import session as session_lib
from jstyle.engine.session import Session
from jstyle.errors import InputError, JStyleError
from jstyle.image import clips
from jstyle.nets import weights
from jstyle.system import files

SAMPLE = {"size": 256, "steps": 100}  # the built-in sample: about a minute on 2 cores
CLIP_FOLDER = "video"  # a clip method's record, movie and checkpoint: OUTPUT/video.*
IMAGE_RUN = "run"  # an image method's session (its record OUTPUT.json, OUTPUT.ckpt.npz)


def _check_output(path: pathlib.Path) -> str:
    """The image format of --output (Pillow's name for its extension), or InputError."""
    from PIL import Image
    if path.is_dir():
        raise InputError(f"--output={path} is a directory; give a file name such as out.png")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"--output={path} has no image extension Pillow can write; use .png")
    return fmt


def _inputs(takes_style: bool):
    """(content path, style paths, is_sample)."""
    if FLAGS.content is None and not FLAGS.style and takes_style:
        content, style = image.sample_paths()
        return content, [style], True
    if FLAGS.content is None or (takes_style and not FLAGS.style):
        raise InputError("give both --content and --style (or neither, for the built-in sample)"
                         if takes_style else f"--method={FLAGS.method} needs --content")
    return pathlib.Path(FLAGS.content), given_style_paths(), False


def given_style_paths() -> list[pathlib.Path]:
    """--style's files, each checked to be a readable file.

    Raises:
      InputError: an empty entry (a stray comma: a file name cannot hold one), or a path
        that is not a readable file.
    """
    if any(not p.strip() for p in FLAGS.style or []):
        raise InputError(f"--style={','.join(FLAGS.style)} has an empty entry; give the style "
                         "images comma-separated, with no comma in a file name")
    paths = [pathlib.Path(p) for p in FLAGS.style or []]
    for path in paths:
        image.check_regular_file(path, "--style")
    return paths


def content_and_outputs(content: pathlib.Path, output: pathlib.Path
                        ) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """(content, output) paths: one pair for a file, one per image for a folder (results as
    OUTPUT/<stem>.png; the caller makes the folder).

    Raises:
      InputError: an empty folder, or a folder in with a file out.
    """
    if not content.is_dir():
        return [(content, output)]
    photos = sorted(p for p in content.iterdir() if p.suffix.lower() in image.IMAGE_SUFFIXES)
    if not photos:
        raise InputError(f"--content={content} is a directory holding no .jpg or .png files; "
                         "give an image file, or a folder of images")
    if output.suffix:
        raise InputError(f"--content={content} is a folder, so --output must be a folder "
                         f"too (got {output}); give --output=FOLDER")
    return [(p, output / f"{p.stem}.png") for p in photos]


def _some(paths: list[pathlib.Path]) -> str:
    """'a' or 'a and N more', for messages."""
    return f"{paths[0]}" + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")


def earlier_clip_outputs(output: pathlib.Path) -> list[pathlib.Path]:
    """What a clip run left in the folder OUTPUT (`clip_outputs`' kinds, any frame count):
    frames and their records, passes/, video.mp4 and video.json; in name order."""
    if not output.is_dir():
        return []
    return sorted(p for p in output.iterdir() if p.name in ("passes", "video.mp4", "video.json")
                  or re.fullmatch(r"frame_\d{4,}\.(png|json)", p.name))


def _mask_paths(content_path: pathlib.Path, style_paths: list[pathlib.Path]
                ) -> list[pathlib.Path]:
    """The label maps of --content_mask and --style_mask (auto: neural doodle's X_sem.png
    beside each image), content's first; [] without masks."""
    from jstyle.ops import masks
    if FLAGS.content_mask is None and not FLAGS.style_mask:
        return []
    if FLAGS.content_mask is None or not FLAGS.style_mask:
        raise InputError("a label map needs the other side's too; give both --content_mask "
                         "and --style_mask (one per style image), or auto")
    style_masks = FLAGS.style_mask
    if style_masks == ["auto"]:
        style_masks = ["auto"] * len(style_paths)
    if len(style_masks) != len(style_paths):
        raise InputError(f"{len(style_masks)} --style_mask for {len(style_paths)} style images; "
                         "give one label map per style image (or auto)")
    find = lambda given, path: masks.sem_path(path) if given == "auto" else pathlib.Path(given)
    return [find(m, p) for m, p in zip([FLAGS.content_mask, *style_masks],
                                       [content_path, *style_paths])]


def _labels(content_path: pathlib.Path, style_paths: list[pathlib.Path], images: list,
            unmatched: str):
    """The semantic regions of --content_mask and --style_mask (masks.Labels), or None."""
    from jstyle.ops import masks
    paths = _mask_paths(content_path, style_paths)
    if not paths:
        return None
    maps = [image.load(p) for p in paths]
    for label_map, img, path in zip(maps, images, [content_path, *style_paths]):
        (h, w), (ih, iw) = label_map.shape[:2], img.shape[:2]
        if abs(h / w - ih / iw) > 0.02 * ih / iw:
            raise InputError(f"the label map of {path} is {w}x{h} px but the image is {iw}x{ih};"
                             " a label map must have its image's aspect ratio")
    return masks.match(maps[0], maps[1:], unmatched)


def reject_flags(method, method_name: str) -> None:
    """InputError for a flag of an input the method does not take."""
    if given("resume") and not methods.resumable(method):
        raise InputError(f"--resume does not apply to --method={method_name}: it keeps no "
                         "checkpoints; leave it out")
    taken, fields = takes(method), {f.name for f in dataclasses.fields(method.Params)}
    for name, (_, _, needs) in COMMON.items():
        if needs and not set(needs) & taken and given(name) and name not in fields:
            raise InputError(f"--{name} does not apply to --method={method_name}; leave it out")
    for name in TRAIN_ONLY:
        if given(name):
            raise InputError(f"--{name} applies to jstyle train only; leave it out")


def check_checkpoint(checkpoint: pathlib.Path, finished: list[pathlib.Path] = ()) -> None:
    """--resume needs the checkpoint; a fresh run may not silently drop one (hours of work),
    and an unreadable one is named as such (`finished`: what a finished run left there, for
    --resume's message)."""
    from jstyle.engine import checkpoint as checkpoint_lib
    if FLAGS.resume and not checkpoint.exists():
        raise InputError(f"--resume: there is no checkpoint {checkpoint} to continue from; " + (
            f"the run that wrote {finished[0]} finished: choose another --output, or remove "
            "its files to start over" if finished else "run without --resume to start"))
    if not FLAGS.resume and checkpoint.exists():
        checkpoint_lib.read(checkpoint)  # an unreadable one: one line naming it
        raise InputError(f"{checkpoint} holds an unfinished run; rerun with --resume to "
                         "continue it, or delete it to start over")


def planned_outputs(output: pathlib.Path, method, hp, opts) -> list[pathlib.Path]:
    """Every file a run writes for OUTPUT (session.planned): images, record, checkpoint,
    snapshots."""
    snapshots = session_lib.snapshot_steps(methods.levels(method, hp, opts), opts.save_every) \
        if "save_every" in methods.options(method) else []
    return session_lib.planned(output, IMAGE_RUN, methods.outputs(method, hp),
                               resumable=methods.resumable(method), snapshots=snapshots)


def input_files(method, content_paths: list[pathlib.Path], style_paths: list[pathlib.Path],
                masks: list[pathlib.Path], hp, opts) -> list[tuple[str, pathlib.Path]]:
    """(flag, path) of every file the run reads: content, styles, label maps, the method's
    inputs of kinds mask and model, the weights, and an --init or any hyperparameter that
    names a file (an outside method's)."""
    found = [("--content", p) for p in content_paths] + [("--style", p) for p in style_paths]
    found += [("a mask", p) for p in masks]
    named = [n for n, (kind, _) in methods.inputs(method).items() if kind in ("mask", "model")]
    for name in (*named, "vgg_weights"):
        if name in FLAGS and getattr(FLAGS, name):
            found.append((f"--{name}", pathlib.Path(getattr(FLAGS, name))))
    for name, value in [*dataclasses.asdict(hp).items(), ("init", opts.init)]:
        if isinstance(value, str) and value and pathlib.Path(value).is_file():
            found.append((f"--{name}", pathlib.Path(value)))
    return found


INPUT_KIND_NAMES = {"mask": "a mask image, white inside",
                    "model": "the model.msgpack that `jstyle train` wrote", "image": "an image",
                    "images": "images", "labels": "label maps"}


def other_inputs(method, method_name: str) -> dict:
    """The method's inputs besides content, styles and labels, from their flags: masks (a
    transparent pixel is not selected) and models, loaded once.

    Raises:
      InputError: a required one not given, or one that cannot be read.
    """
    found = {}
    for name, (kind, required) in methods.inputs(method).items():
        if kind not in ("mask", "model"):
            continue
        path = getattr(FLAGS, name, None) if name in FLAGS else None
        if not path:
            if required:
                raise InputError(f"--method={method_name} needs --{name}; give "
                                 f"--{name}=PATH ({INPUT_KIND_NAMES[kind]})")
            found[name] = None
        elif kind == "mask":
            image.check_regular_file(pathlib.Path(path), f"--{name}")
            found[name] = image.load(path, background=image.BLACK)
        else:
            found[name] = method.load_model(path)
    return found


def fill(method, content, styles, labels, others: dict):
    """The method's Inputs from what the flags gave, by kind: --content fills the first
    required image (or clip), --style the images, the label maps the labels; masks and models
    come in `others`; an optional image (a start) stays None."""
    given_kinds = {"image": content, "clip": content, "images": styles, "labels": labels}
    values = {}
    for name, (kind, required) in methods.inputs(method).items():
        if name in others:
            values[name] = others[name]
        elif kind in given_kinds and (required or kind == "labels"):
            values[name] = given_kinds.pop(kind)
        else:
            values[name] = None
    return method.Inputs(**values)


def _kinds(method) -> set[str]:
    return {kind for kind, _ in methods.inputs(method).values()}


def record_about(method_name: str, method, content_path, style_paths, vgg_weights) -> dict:
    """What the command adds to a record: the command line, the inputs' paths, the preset,
    the weights' source."""
    about = {"command": sys.argv, "method": method_name, "content": str(content_path),
             "style": [str(p) for p in style_paths],
             "preset": FLAGS.preset or next(iter(method.PRESETS)),
             "content_mask": FLAGS.content_mask, "style_mask": FLAGS.style_mask}
    for name, (kind, _) in methods.inputs(method).items():  # the other inputs' files
        if kind in ("mask", "model") and name in FLAGS and getattr(FLAGS, name):
            about[name] = getattr(FLAGS, name)
    if vgg_weights is not None:
        about["vgg_weights"] = {"source": vgg_weights.source, "sha256": vgg_weights.digest,
                                "convention": vgg_weights.convention._asdict()}
    return about


def run_command() -> None:
    """Stylises --content (an image, or every image of a folder) with the chosen method."""
    method_name = FLAGS.method
    method = methods.get(method_name)
    reject_flags(method, method_name)
    if methods.takes_clips(method):
        return run_clip(method, method_name)
    output = pathlib.Path(FLAGS.output)
    content_path, style_paths, sample = _inputs("images" in _kinds(method))
    hp, opts = build_config(method, method_name)
    if sample:
        opts = dataclasses.replace(opts, size=opts.size if given("size") else SAMPLE["size"],
                                   steps=opts.steps if given("steps") else SAMPLE["steps"])
    method.validate(hp, opts, len(style_paths))  # before loading anything
    pairs, fmt, read = _plan(method, hp, opts, content_path, style_paths, output)
    others = other_inputs(method, method_name)
    styles = [image.load(p) for p in style_paths]
    vgg_weights = weights.load(FLAGS.vgg_weights, FLAGS.cache_dir) if methods.uses_vgg(method) \
        else None
    if content_path.is_dir():
        output.mkdir(exist_ok=True)
    written, skipped = [], []
    for photo_path, out in pairs:
        try:
            content = image.load(photo_path)
        except InputError as e:
            if len(pairs) == 1:
                raise
            skipped.append(str(e))
            continue
        labels = _labels(photo_path, style_paths, [content, *styles], opts.unmatched) \
            if "labels" in _kinds(method) else None
        session = Session(output=out, method=IMAGE_RUN, fmt=fmt,
                          progress=opts.print_every > 0, reads=read,
                          about=record_about(method_name, method, photo_path, style_paths,
                                             vgg_weights))
        written.append(run_one(method, fill(method, content, styles, labels, others), hp, opts,
                               vgg_weights, session))
    for message in skipped:
        print(f"jstyle: skipped: {message}", file=sys.stderr)
    if len(pairs) > 1 or content_path.is_dir():
        print(f"jstyle: wrote {len(written)} image(s), "
              f"{sum(r['seconds'] for r in written):.2f}s in the method; {len(skipped)} "
              "unreadable file(s) skipped", file=sys.stderr)


def _plan(method, hp, opts, content_path: pathlib.Path, style_paths, output: pathlib.Path):
    """Every check of the files a run reads and writes, before anything is loaded: returns
    ((content, output) pairs, the output format, the files read)."""
    if not content_path.is_dir():
        image.check_regular_file(content_path, "--content")
    elif files.same_file(content_path, output):
        raise InputError(f"--output={output} is the --content folder: the results would replace "
                         "the photos; choose another output folder")
    fmt = _check_output(output) if not content_path.is_dir() else "PNG"
    pairs = content_and_outputs(content_path, output)
    masks = _mask_paths(content_path, style_paths) if "labels" in _kinds(method) else []
    read = input_files(method, [p for p, _ in pairs], style_paths, masks, hp, opts)
    plan = {str(photo): planned_outputs(out, method, hp, opts) for photo, out in pairs}
    files.check_distinct(plan)
    planned = [p for paths in plan.values() for p in paths]
    if content_path.is_dir() and not output.is_dir():  # a new folder: nothing in it yet
        files.check_folder(output.parent)
        planned = []
    files.check_outputs(planned, read)
    for photo, out in pairs:
        files.check_stale(session_lib.record_path(out, IMAGE_RUN), plan[str(photo)])
    if methods.resumable(method):
        for _, out in pairs:
            check_checkpoint(session_lib.checkpoint_path(out, IMAGE_RUN))
    return pairs, fmt, read


def run_one(method, inputs, hp, opts, vgg_weights, session: Session) -> dict:
    """Runs the method on one content image and writes its images and record together;
    returns the method's record."""
    import jax
    with session.running():
        result = method.run(jax.random.key(opts.seed), inputs, hp, opts, vgg_weights,
                            session=session)
    written = session.write(result)
    done = result.record
    output = session.output
    if done.get("stopped") == "nan":
        raise JStyleError(
            f"the loss became NaN or infinite at step {done['steps'] + 1}; {output} holds the "
            f"last good image (step {done['steps']}); lower the weights or --learning_rate")
    if "final_loss" in done:
        print(f"jstyle: wrote {output} ({done['steps']} steps, {done['seconds']:.1f}s, loss "
              f"{done['initial_loss']['total']:.4g} -> {done['final_loss']['total']:.4g})",
              file=sys.stderr)
    else:
        names = ", ".join(str(p) for p in written.values())
        print(f"jstyle: wrote {names} ({done['seconds']:.1f}s)", file=sys.stderr)
    return done


def clip_outputs(output: pathlib.Path, count: int, passes: int) -> dict[str, list[pathlib.Path]]:
    """What a clip method writes in the folder OUTPUT: "frames" (frame_%04d.png from 1, each
    with its .json), "passes" (the earlier passes' frames, passes/pass_%02d/frame_%04d.png, for
    --resume), "video" (video.mp4 and video.json, written together at the end) and
    "checkpoint" (video.ckpt.npz, while it runs)."""
    frames = [output / f"frame_{t + 1:04d}.png" for t in range(count)]
    earlier = [output / "passes" / f"pass_{n:02d}" / f.name for n in range(1, passes)
               for f in frames]
    return {"frames": frames, "passes": earlier,
            "video": [output / "video.mp4", session_lib.record_path(output, CLIP_FOLDER, True)],
            "checkpoint": [session_lib.checkpoint_path(output, CLIP_FOLDER, True)]}


def clip_flags(method, hp) -> clips.Flows | None:
    """The clip flags checked (frame range; precomputed flows, by the method's
    `check_flows(flows, hp)` where it has one) before anything is read; returns the flows."""
    from jstyle.engine import options
    options.check_at_least({"start_frame": FLAGS.start_frame}, 1,
                           "give a positive whole number")
    options.check_at_least({"num_frames": FLAGS.num_frames}, 0,
                           "give a frame count, or 0 for all")
    patterns = [FLAGS.flow_pattern, FLAGS.flow_weight_pattern, FLAGS.forward_flow_pattern,
                FLAGS.forward_flow_weight_pattern]
    flows = clips.Flows(*patterns) if any(patterns) else None
    if callable(getattr(method, "check_flows", None)):
        method.check_flows(flows, hp)
    return flows


def read_clip(flows: clips.Flows | None, max_edge: int) -> clips.Clip:
    """The clip of --content (its frames from --start_frame on, at `max_edge`)."""
    frames, fps = clips.read(FLAGS.content, FLAGS.start_frame - 1, FLAGS.num_frames, max_edge)
    return clips.Clip(frames, fps, FLAGS.start_frame, flows)


def run_clip(method, method_name: str) -> None:
    """A clip method (`--method=video`): --content is a video file, a folder of frames or a
    printf pattern, --output a folder. Each frame is written with its record as soon as it is
    finished (the last pass's in OUTPUT, earlier passes' under OUTPUT/passes), then
    OUTPUT/video.mp4 (OpenCV, the clip's frame rate) and OUTPUT/video.json together; an
    interrupted run keeps OUTPUT/video.ckpt.npz and continues with --resume."""
    if FLAGS.content is None or not FLAGS.style:
        raise InputError(f"--method={method_name} needs --content (a video file, a folder of "
                         "frames or a pattern such as frame_%04d.png) and --style")
    hp, opts = build_config(method, method_name)
    style_paths = given_style_paths()
    method.validate(hp, opts, len(style_paths))  # before loading anything
    flows = clip_flags(method, hp)
    output = pathlib.Path(FLAGS.output if given("output") else "out")
    frame_files = _check_clip_output(output, style_paths)
    clip = read_clip(flows, opts.size)
    read = input_files(method, frame_files, style_paths, [], hp, opts)
    planned = clip_outputs(output, len(clip.frames), getattr(hp, "passes", 1))
    _check_clip_earlier(output, planned, read)
    styles = [image.load(p) for p in style_paths]
    vgg_weights = weights.load(FLAGS.vgg_weights, FLAGS.cache_dir)
    created = not output.exists()
    output.mkdir(exist_ok=True)
    session = Session(output=output, folder=True, method=CLIP_FOLDER, progress=opts.print_every > 0,
                      reads=read, about=record_about(method_name, method, FLAGS.content,
                                                     style_paths, vgg_weights))
    try:
        import jax
        with session.running():
            result = method.run(jax.random.key(opts.seed), fill(method, clip, styles, None, {}),
                                hp, opts, vgg_weights, session=session)
    except JStyleError:  # bad input found by the method (a flow file): leave nothing behind
        if created and not any(output.iterdir()):
            output.rmdir()
        raise
    mp4 = planned["video"][0]
    temporary = output / ".video.tmp.mp4"  # OpenCV picks the container by the suffix
    try:
        clips.encode_mp4(list(result.images.values()), clip.fps, temporary)
        movie = temporary.read_bytes()
    finally:
        temporary.unlink(missing_ok=True)
    session.write(result, {"fps": clip.fps, "images": [str(p) for p in planned["frames"]],
                           "video": str(mp4)}, images=False, also={mp4: movie})
    print(f"jstyle: wrote {len(clip.frames)} frames, {mp4} and {planned['video'][1]} "
          f"({result.record['seconds']:.1f}s)", file=sys.stderr)


def _check_clip_output(output: pathlib.Path, style_paths) -> list[pathlib.Path]:
    """Checks --output (a folder) and the inputs' files; returns the clip's files."""
    if output.exists() and not output.is_dir():
        raise InputError(f"--output={output} is a file; a clip's frames go into a folder: give "
                         "--output=FOLDER")
    files.check_folder(output.parent)
    path = pathlib.Path(FLAGS.content)
    frame_files = clips.files_of(FLAGS.content)  # the file system first: a name may hold a %
    if path.is_dir() and files.same_file(path, output):
        raise InputError(f"--output={output} is the --content folder: the results would mix "
                         "with the frames; choose another output folder")
    for p in style_paths:
        image.check_regular_file(p, "--style")
    return frame_files


def _check_clip_earlier(output: pathlib.Path, planned: dict, read) -> None:
    """An earlier run's frames are never mixed with (nor replaced by) this run's."""
    if output.is_dir():
        files.check_outputs([p for ps in planned.values() for p in ps], read)
    earlier = earlier_clip_outputs(output)
    check_checkpoint(planned["checkpoint"][0], earlier)
    if earlier and not FLAGS.resume:
        raise InputError(f"--output={output} holds an earlier run's frames ({_some(earlier)}); "
                         "choose another --output, or remove them")
    mine = {p for ps in planned.values() for p in ps} | {output / "passes"}
    stray = [p for p in earlier if p not in mine and p.with_suffix(".png") not in mine]
    if stray:
        raise InputError(f"--output={output} holds frames that are not this run's "
                         f"({_some(stray)}); remove them, or resume with the "
                         "command that made them")
