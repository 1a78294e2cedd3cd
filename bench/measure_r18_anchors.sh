#!/bin/sh
# ResNet-18 inference against the PyTorch anchors (issues 13, 14): ROUNDS rounds (default
# 6), each PyTorch int8/fp32 (../shared/anchors/bench_torch_int8.py) and the apb
# settings, so every ratio compares runs of the same round. Odd rounds run PyTorch
# first, even rounds last (a run right after another process was seen to be slower
# on a shared host). OLD=path/to/apb adds an older build's APB + binary runs. The
# *_s8 settings use the opt-in approximate 8-bit first conv (--int8-stem).
# Run from anywhere after `make`; needs /usr/bin/python3 with python3-torch (the
# anchor only, not apb).
cd "$(dirname "$0")/.."
N=./build/apb
run() { # label, binary, env, args
  l=$1; b=$2; e=$3; shift 3
  v=$(env $e $b bench --model resnet18 "$@" --fp-fraction 0.01 --threads 2 --no-baseline --no-table 2>&1 | grep -o 'latency_ms_median=[0-9.]*' | cut -d= -f2)
  echo "R$r $l $v"
}
torch() {
  GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \
    /usr/bin/python3 ../shared/anchors/bench_torch_int8.py --threads 2 2>&1 | grep RESULT | sed "s/^/R$r /"
}
for r in $(seq ${ROUNDS:-6}); do
  if [ $((r % 2)) = 1 ]; then torch; fi
  # the older build first in even rounds (the first apb run of a round follows
  # a heavy process and was seen to be the slow one)
  if [ -n "$OLD" ] && [ $((r % 2)) = 0 ]; then run old_bin_b1 "$OLD" X=1 --quant apb --act binary --batch 1; fi
  run apb_bin_b1 $N X=1 --quant apb --act binary --batch 1
  if [ -n "$OLD" ] && [ $((r % 2)) = 1 ]; then run old_bin_b1 "$OLD" X=1 --quant apb --act binary --batch 1; fi
  if [ -n "$OLD" ] && [ $((r % 2)) = 0 ]; then run old_bin_b16 "$OLD" X=1 --quant apb --act binary --batch 16 --reps 5; fi
  run apb_bin_b16 $N X=1 --quant apb --act binary --batch 16 --reps 5
  if [ -n "$OLD" ] && [ $((r % 2)) = 1 ]; then run old_bin_b16 "$OLD" X=1 --quant apb --act binary --batch 16 --reps 5; fi
  run apb_bin_b1_s8 $N X=1 --quant apb --act binary --batch 1 --int8-stem
  run apb_bin_b16_s8 $N X=1 --quant apb --act binary --batch 16 --reps 5 --int8-stem
  run apb_i8_b1 $N X=1 --quant apb --act int8 --batch 1
  run apb_i8_b16 $N X=1 --quant apb --act int8 --batch 16 --reps 5
  run apb_i8_b1_s8 $N X=1 --quant apb --act int8 --batch 1 --int8-stem
  run apb_i8_b16_s8 $N X=1 --quant apb --act int8 --batch 16 --reps 5 --int8-stem
  run apb_q2_b1 $N X=1 --quant apb --act q2 --batch 1
  run q2q2_b1 $N X=1 --quant q2 --act q2 --batch 1
  run fp_b1 $N X=1 --quant fp --act fp --batch 1
  run fpwino_b1 $N APBRT_WINOGRAD=1 --quant fp --act fp --batch 1
  run fp_b16 $N X=1 --quant fp --act fp --batch 16 --reps 3
  if [ $((r % 2)) = 0 ]; then torch; fi
done
