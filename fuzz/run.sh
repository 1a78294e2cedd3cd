#!/bin/sh
# run.sh SECONDS - fuzz the .apb loader with libFuzzer + ASan + UBSan.
# Builds fuzz/fuzz_load.c against the runtime sources only (core subset +
# kernels + infer), generates a seed corpus of valid models, and fuzzes for
# SECONDS (default 60). Crashes are written to build/fuzz/ as crash-*.
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
cd "$OUT"
APB_THREADS=1 ./fuzz_load -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 corpus
