"""Replay buffer of real transitions for world-model training and imagination starts."""
