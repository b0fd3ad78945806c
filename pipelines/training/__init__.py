"""The one Ray Train loop every training stage shares, and its pieces: presets, optimizer,
checkpoints, metrics, and run sizing (``plan``: FLOPs, time, cost).
"""
