"""Data: read the sources, decode images, build the manifest with its splits, feed tf.data, download."""
