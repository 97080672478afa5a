"""Modeling: the custom CNN, ImageNet backbones and their weights, cached features, training."""
