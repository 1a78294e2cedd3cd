#!/bin/sh
# mpi.sh - prints the make variables of MPI support (Makefile: $(BUILD)/mpi.mk):
# MPI_CFLAGS and MPI_LIBS from Open MPI's compiler wrapper when it is installed
# and $CC finds mpi.h with its flags; both empty otherwise (apb then builds
# without MPI, as dist/dist_local.c: one process).
CC=${CC:-cc}
echo "# written by .ci/mpi.sh: MPI support for dist/ (docs/DISTRIBUTED.md)"
if command -v mpicc >/dev/null 2>&1 &&
   cflags=$(mpicc --showme:compile 2>/dev/null) &&
   libs=$(mpicc --showme:link 2>/dev/null) &&
   printf '#include <mpi.h>\nint main(void) { return MPI_VERSION > 0 ? 0 : 1; }\n' |
       $CC $cflags -x c - -o /dev/null $libs >/dev/null 2>&1; then
    echo "MPI_CFLAGS := -DAPB_HAVE_MPI $cflags"
    echo "MPI_LIBS := $libs"
else
    echo "MPI_CFLAGS :="
    echo "MPI_LIBS :="
    echo "apb: Open MPI not found (mpicc, mpi.h): building without data-parallel training" >&2
fi
