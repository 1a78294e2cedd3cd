#!/bin/sh
# run.sh SECONDS [TARGET...] - fuzz apb's parsers with libFuzzer + ASan + UBSan.
# Targets (default: all, one after the other, SECONDS each):
#   load     the .apb loader (fuzz_load.c), on runtime sources only
#   idx      IDX files, raw and gzip (fuzz_idx.c)
#   cifar    CIFAR-10/100 binary files and class lists (fuzz_cifar.c)
#   image    PNG / JPEG decoding and preprocessing (fuzz_image.c)
#   ckpt     checkpoints, loaded and filled into their model (fuzz_ckpt.c)
#   options  apb train's option parsing (fuzz_options.c)
#   import   ONNX files through apb import (fuzz_import.c; protobuf-c code generated
#            by protoc-c from libonnx-dev's onnx.proto)
# FUZZ_RUNS=N runs N inputs per target instead of SECONDS. Seeds: generated
# .apb models for load, generated ONNX files for import, fuzz/corpus/<target>/ for the others (copied to
# build/fuzz/work-<target>, which keeps what the fuzzer finds interesting).
# Crashes are written to build/fuzz/ as crash-*; each run's log is
# build/fuzz/<target>.log (its last lines give the executions).
set -e
cd "$(dirname "$0")/.."
SECS=${1:-60}
[ $# -gt 0 ] && shift
TARGETS=${*:-load idx cifar image ckpt options import}
OUT=build/fuzz
mkdir -p "$OUT/corpus"
CC=${CC:-clang}
RT="core/status.c core/arena.c core/rng.c core/cpu.c core/threads.c core/crc32.c core/fileio.c core/bits.c $(ls kernels/*.c | grep -v -e '_avx2.c$' -e '_avx512.c$') infer/*.c"
FLAGS="-std=gnu11 -g -O1 -fno-omit-frame-pointer -fopenmp -Icore -Ikernels -Iinfer -Itests"
case " $TARGETS " in *" load "*)
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
;; esac

# The other targets read files through the whole library: every source but
# cli/main.c, instrumented for coverage (fuzzer-no-link), in one archive, with
# stb_image's decoders compiled in (fuzz/stb_impl.c). The image decode cap is
# lowered to 4 M pixels here (fuzz_image.c says why).
LIBFLAGS="$FLAGS -I. -Ilayers -Imodels -Ioptim -Idata -Itrain -Ireport -Ibench -Idist -Icli -Ifuzz \
    -DAPB_IMAGE_MAX_PIXELS=4000000L -fsanitize=fuzzer-no-link,address,undefined -Wno-pass-failed"
mkdir -p "$OUT/lib"
# dist/: the one-process fallback (the fuzzers never start MPI).
SRCS=$(ls core/*.c kernels/*.c infer/*.c layers/*.c models/*.c optim/*.c data/*.c train/*.c \
    report/*.c bench/*.c dist/dist_local.c cli/*.c fuzz/stb_impl.c | grep -v '^cli/main.c$')
# Rebuilt when a source is newer than its object; everything when a header is
# newer than the archive. One compiler per core, each with its file's ISA flags.
[ -f "$OUT/libapbfuzz.a" ] && [ -z "$(find . -name '*.h' -newer "$OUT/libapbfuzz.a" | head -1)" ] ||
    rm -f "$OUT"/lib/*.o
echo "$SRCS" | xargs -P "$(nproc)" -n 1 sh -c '
    f=$1; o='"$OUT"'/lib/$(echo "$f" | tr / _ | sed "s/\.c$/.o/")
    [ "$o" -nt "$f" ] && exit 0
    case $f in
    *_avx2.c) isa="-mavx2 -mfma -mpopcnt" ;;
    *_avx512.c) isa="-mavx2 -mfma -mpopcnt -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vpopcntdq" ;;
    *) isa="" ;;
    esac
    '"$CC $LIBFLAGS"' $isa -c "$f" -o "$o"' sh
rm -f "$OUT/libapbfuzz.a"
ar rcs "$OUT/libapbfuzz.a" "$OUT"/lib/*.o
$CC $LIBFLAGS fuzz/make_corpus.c "$OUT/libapbfuzz.a" -lpng -lz -lstb -lm -o "$OUT/make_corpus"
case " $TARGETS " in *" import "*)
ONNX_PROTO=${ONNX_PROTO:-/usr/include/onnx/onnx.proto}
mkdir -p "$OUT/gen" "$OUT/work-import"
cp "$ONNX_PROTO" "$OUT/gen/onnx.proto"
(cd "$OUT/gen" && protoc-c --c_out=. onnx.proto)
IOBJS=""
for f in "$OUT/gen/onnx.pb-c.c" import/*.c; do
    o="$OUT/lib/imp_$(basename "$f" .c).o"
    $CC $LIBFLAGS -Iimport -I"$OUT/gen" -w -c "$f" -o "$o"
    IOBJS="$IOBJS $o"
done
$CC $LIBFLAGS -Iimport -I"$OUT/gen" fuzz/make_import_seeds.c $IOBJS "$OUT/libapbfuzz.a" \
    -lprotobuf-c -lpng -lz -lstb -lm -o "$OUT/make_import_seeds"
"$OUT/make_import_seeds" "$OUT/work-import"
$CC $LIBFLAGS -Iimport -I"$OUT/gen" -fsanitize=fuzzer fuzz/fuzz_import.c $IOBJS "$OUT/libapbfuzz.a" \
    -lprotobuf-c -lpng -lz -lstb -lm -o "$OUT/fuzz_import"
;; esac
for t in idx cifar image ckpt options; do
    case " $TARGETS " in *" $t "*) ;; *) continue ;; esac
    $CC $LIBFLAGS -fsanitize=fuzzer fuzz/fuzz_$t.c "$OUT/libapbfuzz.a" -lpng -lz -lstb -lm \
        -o "$OUT/fuzz_$t"
done

cd "$OUT"
# the file readers' targets write two small files per input: tmpfs when there is one
[ -z "$TMPDIR" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
for t in $TARGETS; do
    if [ "$t" = load ]; then
        corpus=corpus
    elif [ "$t" = import ]; then
        corpus=work-import
    else
        corpus=work-$t
        mkdir -p "$corpus"
        cp ../../fuzz/corpus/$t/* "$corpus"/
    fi
    if [ -n "$FUZZ_RUNS" ]; then limit="-runs=$FUZZ_RUNS"; else limit="-max_total_time=$SECS"; fi
    # options: the parser's own messages are not the fuzzer's
    quiet=""
    [ "$t" = options ] && quiet="-close_fd_mask=3"
    echo "fuzz $t: $limit"
    APB_THREADS=1 ./fuzz_$t $limit $quiet -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
        "$corpus" > "$t.log" 2>&1 || { tail -40 "$t.log"; exit 1; }
    grep -E "^Done|stat::number_of_executed_units" "$t.log" || tail -3 "$t.log"
done
