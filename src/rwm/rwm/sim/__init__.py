"""Simulated ANYmal: batched MuJoCo environment, state extraction, commands and the reward."""
