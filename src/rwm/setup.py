from setuptools import find_packages, setup

package_name = "rwm"

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
    description="Robotic World Model core (no ROS)",
    license="BSD-3-Clause",
    entry_points={"console_scripts": ["rwm = rwm.cli:main"]},
)
