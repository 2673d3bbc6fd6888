"""Experiments that train several world models and compare them (one command each)."""
