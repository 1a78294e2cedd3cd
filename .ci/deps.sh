#!/bin/sh
# deps.sh - make sure the Debian packages apb builds and tests with are present.
# As root it installs what is missing; otherwise it prints the exact command and fails.
# pkgconf: the tests build the embedding example as README says, with pkg-config.
# protobuf-c + libonnx-dev: `apb import` (ONNX), compiled from onnx.proto at build time.
# Optional: Open MPI for data-parallel `apb train` under mpirun (docs/DISTRIBUTED.md);
# installed as root like the others, otherwise only named: apb builds without it.
PKGS="libpng-dev libjpeg62-turbo-dev zlib1g-dev pkgconf dataset-fashion-mnist libprotobuf-c-dev protobuf-c-compiler libonnx-dev"
OPTIONAL_PKGS="libopenmpi-dev openmpi-bin"
# Not a Debian system: nothing to check here; the compiler will say what is missing.
command -v dpkg-query >/dev/null 2>&1 || exit 0
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
missing=""
for p in $PKGS; do
    installed "$p" || missing="$missing $p"
done
optional=""
for p in $OPTIONAL_PKGS; do
    installed "$p" || optional="$optional $p"
done
if [ "$(id -u)" != 0 ] && [ -n "$optional" ]; then
    echo "apb: optional Debian packages missing (building without MPI). For mpirun, as root:" >&2
    echo "  apt-get update && apt-get install -y$optional" >&2
else
    missing="$missing$optional"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "apb: installing missing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null || {
        echo "apb: apt-get install failed; run: apt-get install -y$missing" >&2; exit 1; }
else
    echo "apb: missing Debian packages. Run as root:" >&2
    echo "  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
