"""Pieces every Ray Train stage shares: presets, optimizer, checkpoints, metrics, the loop."""
