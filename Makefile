# apb - training and inference for APB-compressed neural networks.
#
# Toggles (make VAR=value):
#   OMP=0      build without OpenMP (single-threaded everywhere)
#   SAN=1      AddressSanitizer + UndefinedBehaviorSanitizer build (in build/san)
#   DEBUG=1    -O0 -g
#   PREFIX=... install prefix (default /usr/local)
#   CC=clang   any C11 compiler with GNU extensions
#   MPI=0      build without MPI even where Open MPI is installed (default: with
#              it when mpicc and mpi.h are found; docs/DISTRIBUTED.md)
#
# Targets: all, test, demo, bench, install, clean, deps, fuzz.
# ISA-specific files (*_avx2.c, *_avx512.c) are the only ones built with ISA
# flags; everything else is portable and kernels are chosen at run time.
# -ffp-contract=off: training and the runtime must round a*x+b identically.

CC      ?= cc
PREFIX  ?= /usr/local
OMP     ?= 1
SAN     ?= 0
DEBUG   ?= 0
MPI     ?= auto

OPT     := -O2
ifeq ($(DEBUG),1)
  OPT   := -O0 -g
endif
ifeq ($(SAN),1)
  OPT   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
# One build directory per configuration, so settings never mix objects:
# build (default), build/san, build/noomp, build/debug, build/san-noomp, build/nompi, ...
empty     :=
space     := $(empty) $(empty)
BUILD_TAG := $(subst $(space),-,$(strip $(if $(filter 1,$(SAN)),san) $(if $(filter 0,$(OMP)),noomp) \
               $(if $(filter 1,$(DEBUG)),debug) $(if $(filter 0,$(MPI)),nompi)))
BUILD   := build$(if $(BUILD_TAG),/$(BUILD_TAG))

CFLAGS_BASE := -std=gnu11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-format-truncation \
               -ffp-contract=off -fPIC -I. -Icore -Ikernels -Ilayers -Imodels -Ioptim -Idata -Itrain -Ireport -Iinfer -Ibench -Iimport -Idist -Icli -Itests
LDLIBS_BASE := -lm
ifeq ($(OMP),1)
  CFLAGS_BASE += -fopenmp
  LDLIBS_BASE += -fopenmp
else
  CFLAGS_BASE += -Wno-unknown-pragmas
endif
ifeq ($(SAN),1)
  LDLIBS_BASE += -fsanitize=address,undefined
endif
override CFLAGS += $(CFLAGS_BASE) -DAPB_BUILD_DIR='"$(BUILD)"'

AVX2_FLAGS   := -mavx2 -mfma -mpopcnt
AVX512_FLAGS := -mavx2 -mfma -mpopcnt -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vpopcntdq

# Third-party libraries from Debian packages (never vendored).
DEPS_LIBS := -lpng -ljpeg -lz
# ONNX import (import/): protobuf-c decodes the onnx.proto that libonnx-dev
# ships, compiled to C at build time into $(BUILD)/gen (never committed). Only
# `apb` and run_tests link it; libapbrt never does.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
GEN        := $(BUILD)/gen
IMPORT_LIBS := -lprotobuf-c

# MPI (dist/, data-parallel `apb train`): $(BUILD)/mpi.mk sets MPI_CFLAGS and
# MPI_LIBS from `mpicc --showme` when Open MPI's compiler wrapper and mpi.h are
# there, empty otherwise. It is written after the package check (which installs
# Open MPI as root) and make reads it back, restarting once. Only dist/ is
# compiled with MPI's flags, only `apb` and run_tests link it; libapbrt never.
MPI_CFLAGS :=
MPI_LIBS   :=
ifneq ($(MPI),0)
ifeq ($(filter clean,$(MAKECMDGOALS)),)
-include $(BUILD)/mpi.mk
endif
endif
DIST      := $(if $(MPI_LIBS),dist/dist_mpi.c,dist/dist_local.c)

CORE_RT   := core/status.c core/arena.c core/rng.c core/cpu.c core/threads.c core/crc32.c core/fileio.c core/bits.c
CORE_ALL  := $(wildcard core/*.c)
KERNELS   := $(wildcard kernels/*.c)
INFER     := $(wildcard infer/*.c)
# Everything above the runtime: layers, models, optimizers, data, training,
# report, benchmarks and the command files (cli/main.c alone makes `apb`).
TRAINLIBS := $(wildcard layers/*.c models/*.c optim/*.c data/*.c train/*.c report/*.c bench/*.c import/*.c) $(DIST) \
             $(filter-out cli/main.c,$(wildcard cli/*.c))
TESTS     := $(wildcard tests/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

RT_OBJS   := $(call obj,$(CORE_RT) $(KERNELS) $(INFER))
LIB_OBJS  := $(call obj,$(CORE_ALL) $(KERNELS) $(INFER) $(TRAINLIBS)) $(GEN)/onnx.pb-c.o
TEST_OBJS := $(call obj,$(TESTS))
MAIN_OBJ  := $(call obj,cli/main.c)

.PHONY: all test demo bench install clean deps fuzz check-deps
all: $(BUILD)/apb $(BUILD)/libapbrt.a $(BUILD)/libapbrt.so $(BUILD)/run_tests

# Set-up: install missing Debian packages as root, or print the exact command.
# Every object waits for it (order-only), so `make -j` cannot compile first;
# `make deps` runs the check now, whatever the stamp says.
check-deps: $(BUILD)/.deps-ok
$(BUILD)/.deps-ok: .ci/deps.sh
	@mkdir -p $(BUILD)
	@sh .ci/deps.sh
	@touch $@

deps:
	@mkdir -p $(BUILD)
	@sh .ci/deps.sh
	@touch $(BUILD)/.deps-ok

$(BUILD)/mpi.mk: $(BUILD)/.deps-ok .ci/mpi.sh
	@CC="$(CC)" sh .ci/mpi.sh > $@.tmp && mv $@.tmp $@

# dist/'s object follows the MPI that mpi.mk found.
$(call obj,$(DIST)): override CFLAGS += $(MPI_CFLAGS)
$(call obj,$(DIST)): $(if $(filter 0,$(MPI)),,$(BUILD)/mpi.mk)

$(BUILD)/obj/%_avx2.o: %_avx2.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c | $(BUILD)/.deps-ok $(GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(GEN) -MMD -MP -c $< -o $@

# The ONNX decoder, generated by protoc-c (its own warnings are not ours).
$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h: $(ONNX_PROTO) | $(BUILD)/.deps-ok
	@mkdir -p $(GEN)
	cp $(ONNX_PROTO) $(GEN)/onnx.proto
	cd $(GEN) && protoc-c --c_out=. onnx.proto

$(GEN)/onnx.pb-c.o: $(GEN)/onnx.pb-c.c
	$(CC) $(filter-out -Wall -Wextra,$(CFLAGS)) -w -c $< -o $@

$(BUILD)/libapb.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libapbrt.a: $(RT_OBJS)
	@rm -f $@
	ar rcs $@ $^

# The runtime's objects export nothing by default: libapbrt.so's dynamic symbols
# are exactly the API that apbrt.h marks APBRT_API (the apb_* internals stay
# inside). Static links (libapb.a, libapbrt.a) are unaffected. The objects
# depend on this file so that a change of these flags rebuilds them.
$(RT_OBJS): override CFLAGS += -fvisibility=hidden
$(RT_OBJS): Makefile

# SONAME libapbrt.so.1: programs record it, so an incompatible libapbrt.so.2
# can sit beside it; libapbrt.so is the link-time name.
$(BUILD)/libapbrt.so.1: $(RT_OBJS)
	$(CC) -shared -Wl,-soname,libapbrt.so.1 -o $@ $^ $(LDLIBS_BASE)

$(BUILD)/libapbrt.so: $(BUILD)/libapbrt.so.1
	ln -sf libapbrt.so.1 $@

$(BUILD)/apb: $(MAIN_OBJ) $(BUILD)/libapb.a
	$(CC) -o $@ $(MAIN_OBJ) $(BUILD)/libapb.a $(DEPS_LIBS) $(IMPORT_LIBS) $(MPI_LIBS) $(LDLIBS_BASE)

$(BUILD)/run_tests: $(TEST_OBJS) $(BUILD)/libapb.a
	$(CC) -o $@ $(TEST_OBJS) $(BUILD)/libapb.a $(DEPS_LIBS) $(IMPORT_LIBS) $(MPI_LIBS) $(LDLIBS_BASE)

# The suite: unit tests, gradient checks, kernels at every ISA level, data
# readers, training, export/runtime exactness, a bounded loader fuzz run.
test: all
	./$(BUILD)/run_tests $(T)

demo: all
	sh cli/demo.sh $(BUILD)/apb

bench: all
	./$(BUILD)/apb bench sgemm
	./$(BUILD)/apb bench kernels
	./$(BUILD)/apb bench data
	./$(BUILD)/apb bench train

# Programs built with `pkg-config --libs apbrt` get an rpath to PREFIX/lib, so
# they start without LD_LIBRARY_PATH or ldconfig; /usr/lib needs none.
comma    := ,
PC_RPATH := $(if $(filter /usr /usr/,$(PREFIX)),,-Wl$(comma)-rpath$(comma)$${libdir})

install: all
	install -d $(DESTDIR)$(PREFIX)/include/apb $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 infer/apbrt.h $(DESTDIR)$(PREFIX)/include/apb/
	install -m 644 $(BUILD)/libapbrt.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libapbrt.so.1 $(DESTDIR)$(PREFIX)/lib/
	ln -sf libapbrt.so.1 $(DESTDIR)$(PREFIX)/lib/libapbrt.so
	install -m 755 $(BUILD)/apb $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@RPATH@|$(PC_RPATH)|g' infer/apbrt.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/apbrt.pc

# libFuzzer + ASan/UBSan runs of every parser (clang; fuzz/run.sh lists the
# targets, the ONNX importer included): FUZZ_SECONDS per target, FUZZ_TARGETS to
# pick some, FUZZ_RUNS=N for N inputs each instead (docs/RELIABILITY.md has the figures).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) sh fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
