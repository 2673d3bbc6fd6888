"""Runners: what sequences collect -> update -> imagine -> evaluate -> log -> save (rsl_rl's split from
the algorithms): world-model pretraining, refinement from bags, PPO and MBPO-PPO."""
