"""Shared segmentation core: models, losses, metrics, the Lightning task, data and inference."""
