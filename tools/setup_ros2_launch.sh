#!/usr/bin/env bash
# Make `ros2 launch` work in the project's venv (called by `make setup`; idempotent).
#
# PyPI has the ROS 2 Kilted runtime wheels but not launch, launch_ros, ros2cli, nor the
# composition_interfaces service package that launch_ros imports. With ../shared/vendor/ros2 (upstream
# sources, see its SOURCE.md) they are installed from there: the pure-Python packages into the venv
# (--no-deps: the PyPI package called `launch` is another project), and composition_interfaces is
# built by colcon in the workspace (the Makefile adds it to the build). Without that folder, a ROS 2
# install must provide them (source /opt/ros/kilted/setup.bash first): checked, and said.
#
#   tools/setup_ros2_launch.sh VENV VENDOR
set -euo pipefail
venv=$1
vendor=$2
py="$venv/bin/python"

if [[ ! -d "$vendor" ]]; then
  echo "setup: no $vendor: using the installed launch, launch_ros, ros2cli and composition_interfaces"
  if ! "$py" -c "import launch, launch_ros, ros2launch, ros2cli, composition_interfaces" 2>/dev/null; then
    echo "setup: error: ros2 launch is not available. Source a ROS 2 Kilted install" \
      "(source /opt/ros/kilted/setup.bash) or put the upstream sources in $vendor (see its SOURCE.md)" >&2
    exit 1
  fi
  exit 0
fi

# cmake and g++ build composition_interfaces (Debian packages).
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]} (apt-get)"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: error: need ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

pip=("$py" -m pip install -q --disable-pip-version-check)
"${pip[@]}" -r requirements-launch.txt -c constraints.txt

# pip builds in the source folder; build copies so that ../shared is never written.
copy=build/vendor_src
rm -rf "$copy"
mkdir -p "$copy"
packages=(launch/launch launch/launch_xml launch/launch_yaml launch_ros/launch_ros launch_ros/ros2launch
  ros2cli/ros2cli ros2cli/ros2pkg)
for p in "${packages[@]}"; do
  [[ -f "$vendor/$p/setup.py" ]] || { echo "setup: error: $vendor/$p/setup.py missing" >&2; exit 1; }
  cp -r "$vendor/$p" "$copy/"
done
copies=()
for p in "${packages[@]}"; do copies+=("$copy/$(basename "$p")"); done
"${pip[@]}" --no-deps --no-build-isolation "${copies[@]}"
rm -rf "$copy"

# The rosidl wheels' CMake exports name the include folders of the machine they were built on.
pyinc=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
npinc=$("$py" -c "import numpy; print(numpy.get_include())")
for f in $(grep -l "/opt/python/cp311-cp311" "$venv"/share/*/cmake/*.cmake || true); do
  sed -i "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g;
          s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" "$f"
done
echo "setup: launch, launch_ros, ros2cli installed from $vendor"
