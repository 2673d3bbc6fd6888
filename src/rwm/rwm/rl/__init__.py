"""Reinforcement learning: rsl-rl adapters (simulation, imagination), PPO and MBPO-PPO."""
