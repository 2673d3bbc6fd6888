"""The 50 Hz control path without ROS: robot state in, policy, safety filter, joint targets out."""
