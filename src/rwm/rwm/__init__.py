"""RWM core: robotic world model, simulation, data and learning, free of ROS."""

__version__ = "0.1.0"
