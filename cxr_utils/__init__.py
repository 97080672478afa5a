"""cxr-covid utilities."""
