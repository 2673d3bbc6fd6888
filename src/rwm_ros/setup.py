from setuptools import find_packages, setup

package_name = "rwm_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="RWM developers",
    maintainer_email="rwm-dev@example.com",
    description="rclpy nodes of the RWM deployment stack",
    license="BSD-3-Clause",
    entry_points={
        "console_scripts": [
            "sim_node = rwm_ros.sim_node:main",
            "exploration_node = rwm_ros.exploration_node:main",
            "stack_probe = rwm_ros.stack_probe:main",
            "policy_node = rwm_ros.policy_node:main",
            "logger_node = rwm_ros.logger_node:main",
            "trainer_node = rwm_ros.trainer_node:main",
            "world_model_node = rwm_ros.world_model_node:main",
            "command_sequence_node = rwm_ros.command_sequence_node:main",
            "state_publisher_node = rwm_ros.state_publisher_node:main",
            "foxglove_bridge_node = rwm_ros.foxglove_bridge_node:main",
        ]
    },
)
