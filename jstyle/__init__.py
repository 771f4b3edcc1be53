"""jstyle: neural style transfer in JAX on one shared VGG-19.

The public API, re-exported:

  weights = jstyle.load_weights()                      # VGG-19, fetched once and cached
  content = jstyle.image.load("photo.jpg")             # float32[H, W, 3] in [0, 1]
  style = jstyle.image.load("painting.jpg")
  result = jstyle.gatys.run(content, [style], jstyle.gatys.GatysParams(),
                            jstyle.RunOptions(size=256), weights, jax.random.key(0))
  result.images["output"], result.record, result.history
  jstyle.methods.get("mrf")                            # any method by name or module path
"""

from jstyle import image, methods, results
from jstyle.ops import losses
from jstyle.ops import masks
from jstyle.engine import optimize
from jstyle.engine import runs
from jstyle.nets import vgg
from jstyle.errors import InputError, JStyleError, WeightsError
from jstyle.methods import gatys
from jstyle.engine.runs import RunOptions
from jstyle.nets.weights import VGGWeights
from jstyle.nets.weights import load as load_weights

__all__ = ["image", "losses", "masks", "methods", "optimize", "results", "runs", "vgg", "gatys",
           "RunOptions", "load_weights", "VGGWeights", "JStyleError", "InputError",
           "WeightsError"]
