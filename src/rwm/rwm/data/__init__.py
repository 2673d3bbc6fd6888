"""Trajectories, rosbag2 I/O on the contract topics, compact array datasets, data collection."""
