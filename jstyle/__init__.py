"""jstyle: neural style transfer in JAX on one shared VGG-19.

The public API, re-exported (everything else may change):

  weights = jstyle.load_weights()                      # VGG-19, fetched once and cached
  content = jstyle.image.load("photo.jpg")             # float32[H, W, 3] in [0, 1]
  style = jstyle.image.load("painting.jpg")
  gatys = jstyle.methods.get("gatys")                  # any method by name or module path
  hp, opts = gatys.PRESETS["jstyle"]
  result = gatys.run(jax.random.key(0), gatys.Inputs(content, [style]), hp,
                     dataclasses.replace(opts, size=256), weights, session=jstyle.Session())
  result.images["output"], result.record, result.history

A Session(output=path) also keeps checkpoints and snapshots beside the output and writes the
result with its record (`session.write(result)`).
"""

from jstyle import image, methods, objective, results
from jstyle.engine import kinds
from jstyle.engine.options import RunOptions
from jstyle.engine.session import Result, Session, Stopped
from jstyle.errors import InputError, JStyleError, WeightsError
from jstyle.nets import vgg
from jstyle.nets.weights import VGGWeights
from jstyle.nets.weights import load as load_weights
from jstyle.ops import losses, masks

__all__ = ["image", "methods", "objective", "results", "kinds", "vgg", "losses", "masks",
           "RunOptions", "Session", "Result", "Stopped", "load_weights", "VGGWeights",
           "JStyleError", "InputError", "WeightsError"]
