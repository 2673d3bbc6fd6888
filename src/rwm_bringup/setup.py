"""Installs the top-level launch/, config/ and models/ (symlinked here) into share/rwm_bringup."""

from glob import glob

from setuptools import setup

package_name = "rwm_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=[],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{package_name}/models", glob("models/*.onnx") + glob("models/*.json") + glob("models/*.pt")),
        (f"share/{package_name}/models/anymal_d_heldout", glob("models/anymal_d_heldout/*")),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="RWM developers",
    maintainer_email="rwm-dev@example.com",
    description="Launch and parameter files of the RWM stack",
    license="BSD-3-Clause",
)
