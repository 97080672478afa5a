"""cxr-covid utilities: the notebooks' shared code (see the README's layout section)."""

from .config import use_onednn

use_onednn()  # before anything imports TensorFlow
