"""cxr-covid utilities: the notebooks' shared code (see the README's layout section)."""
