#!/bin/sh
# run.sh SECONDS - fuzz the .apb loader and the ONNX importer with libFuzzer +
# ASan + UBSan, SECONDS each (default 60).
# fuzz_load.c is built against the runtime sources only (core subset + kernels +
# infer); fuzz_import.c against the importer, the models and the protobuf-c
# code protoc-c generates from libonnx-dev's onnx.proto. Each gets a seed corpus
# of valid files. Crashes are written to build/fuzz/ as crash-*.
set -e
cd "$(dirname "$0")/.."
SECS=${1:-60}
OUT=build/fuzz
mkdir -p "$OUT/corpus"
CC=${CC:-clang}
RT="core/status.c core/arena.c core/rng.c core/cpu.c core/threads.c core/crc32.c core/fileio.c core/bits.c $(ls kernels/*.c | grep -v -e '_avx2.c$' -e '_avx512.c$') infer/*.c"
FLAGS="-std=gnu11 -g -O1 -fno-omit-frame-pointer -fopenmp -Icore -Ikernels -Iinfer -Itests"
# ISA files need their own flags: compile them separately.
ISA_OBJS=""
for f in kernels/*_avx2.c; do
    [ -f "$f" ] || continue
    o="$OUT/$(basename "$f" .c).o"
    $CC $FLAGS -fsanitize=address,undefined -mavx2 -mfma -mpopcnt -c "$f" -o "$o"
    ISA_OBJS="$ISA_OBJS $o"
done
for f in kernels/*_avx512.c; do
    [ -f "$f" ] || continue
    o="$OUT/$(basename "$f" .c).o"
    $CC $FLAGS -fsanitize=address,undefined -mavx2 -mfma -mpopcnt -mavx512f -mavx512bw -mavx512dq \
        -mavx512vl -mavx512vpopcntdq -c "$f" -o "$o"
    ISA_OBJS="$ISA_OBJS $o"
done
$CC $FLAGS -fsanitize=address,undefined fuzz/make_seeds.c $RT $ISA_OBJS -lm -o "$OUT/make_seeds"
"$OUT/make_seeds" "$OUT/corpus"
$CC $FLAGS -fsanitize=fuzzer,address,undefined fuzz/fuzz_load.c $RT $ISA_OBJS -lm -o "$OUT/fuzz_load"
ONNX_PROTO=${ONNX_PROTO:-/usr/include/onnx/onnx.proto}
mkdir -p "$OUT/gen" "$OUT/import-corpus"
cp "$ONNX_PROTO" "$OUT/gen/onnx.proto"
(cd "$OUT/gen" && protoc-c --c_out=. onnx.proto)
IMP="$RT $(ls core/*.c | grep -v -e core/status.c -e core/arena.c -e core/rng.c -e core/cpu.c -e core/threads.c -e core/crc32.c -e core/fileio.c) layers/*.c models/*.c import/*.c train/checkpoint.c"
IFLAGS="$FLAGS -Ilayers -Imodels -Itrain -Iimport -I$OUT/gen"
$CC $IFLAGS -w -c "$OUT/gen/onnx.pb-c.c" -o "$OUT/onnx.pb-c.o"
$CC $IFLAGS -fsanitize=address,undefined fuzz/make_import_seeds.c $IMP $OUT/onnx.pb-c.o $ISA_OBJS -lprotobuf-c -lm -o "$OUT/make_import_seeds"
"$OUT/make_import_seeds" "$OUT/import-corpus"
$CC $IFLAGS -fsanitize=fuzzer,address,undefined fuzz/fuzz_import.c $IMP $OUT/onnx.pb-c.o $ISA_OBJS -lprotobuf-c -lm -o "$OUT/fuzz_import"
cd "$OUT"
APB_THREADS=1 ./fuzz_load -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 corpus
APB_THREADS=1 ./fuzz_import -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 import-corpus
