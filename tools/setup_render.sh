#!/usr/bin/env bash
# Offscreen rendering for `rwm render` (MuJoCo on EGL with Mesa's software rasterizer): Debian's
# libegl1, libegl-mesa0 and libgl1-mesa-dri. Installed with apt-get when missing and run as root;
# otherwise says what to install (rendering is the only thing that needs them).
set -euo pipefail
if ldconfig -p | grep -q 'libEGL_mesa.so.0' && [[ -d /usr/lib/x86_64-linux-gnu/dri || -d /usr/lib/aarch64-linux-gnu/dri ]]; then
  exit 0
fi
pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri)
if [[ $(id -u) -ne 0 ]]; then
  echo "setup: rwm render needs ${pkgs[*]}; run: sudo apt-get install -y ${pkgs[*]}" >&2
  exit 0
fi
echo "setup: installing ${pkgs[*]} (apt-get) for rwm render"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
