"""Thin rclpy nodes around the RWM core; the logic they need without ROS lives in plain modules here."""
