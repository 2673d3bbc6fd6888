"""Reinforcement learning: rsl-rl adapters for the simulated robot (and later the imagination env)."""
