#!/usr/bin/env bash
# Installs the system packages Tandem builds against (OpenMPI, OpenBLAS, HDF5, cairo with
# the DejaVu fonts for `tandem plot`, minizip for .npz data, libcsv for CSV data, libpng and libjpeg-turbo for image files,
# oneDNN for convolutions, pkg-config).
# Skips apt when everything is already present; needs root (or sudo) otherwise.
set -euo pipefail
need=()
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
pkg-config --exists ompi-c 2>/dev/null || need+=(libopenmpi-dev)
[ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] || [ -e /usr/include/openblas/cblas.h ] || need+=(libopenblas-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists hdf5 2>/dev/null || need+=(libhdf5-dev)
pkg-config --exists cairo 2>/dev/null || need+=(libcairo2-dev)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
pkg-config --exists minizip 2>/dev/null || need+=(libminizip-dev)
[ -e /usr/include/csv.h ] || need+=(libcsv-dev)
pkg-config --exists libpng 2>/dev/null || need+=(libpng-dev)
pkg-config --exists libturbojpeg 2>/dev/null || need+=(libturbojpeg0-dev)
[ -e /usr/include/oneapi/dnnl/dnnl.h ] || need+=(libdnnl-dev)
if [ ${#need[@]} -eq 0 ]; then
  echo "install-deps: OpenMPI, OpenBLAS, HDF5, cairo, fonts, minizip, libcsv, libpng, libjpeg-turbo, oneDNN and pkg-config are present"
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "install-deps: installing ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev libcairo2-dev fonts-dejavu-core libminizip-dev libcsv-dev libpng-dev libturbojpeg0-dev libdnnl-dev pkg-config >/dev/null
