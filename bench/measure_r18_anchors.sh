#!/bin/sh
# ResNet-18 inference against the PyTorch anchors (issue 13): 3 rounds, each
# PyTorch int8/fp32 (../shared/anchors/bench_torch_int8.py) then the apb settings,
# so every ratio compares runs of the same round. Run from anywhere after `make`;
# needs /usr/bin/python3 with python3-torch (the anchor only, not apb).
cd "$(dirname "$0")/.."
B=./build/apb
run() { # label, env, args
  l=$1; e=$2; shift 2
  v=$(env $e $B bench --model resnet18 "$@" --fp-fraction 0.01 --threads 2 --no-baseline --no-table 2>&1 | grep -o 'latency_ms_median=[0-9.]*' | cut -d= -f2)
  echo "R$r $l $v"
}
for r in 1 2 3; do
  GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \
    /usr/bin/python3 ../shared/anchors/bench_torch_int8.py --threads 2 2>&1 | grep RESULT | sed "s/^/R$r /"
  run apb_bin_b1 X=1 --quant apb --act binary --batch 1
  run apb_bin_b1_nochan APBRT_NO_CHANPACK=1 --quant apb --act binary --batch 1
  run apb_bin_b16 X=1 --quant apb --act binary --batch 16 --reps 5
  run apb_bin_b16_nochan APBRT_NO_CHANPACK=1 --quant apb --act binary --batch 16 --reps 5
  run apb_q2_b1 X=1 --quant apb --act q2 --batch 1
  run q2q2_b1 X=1 --quant q2 --act q2 --batch 1
  run fp_b1 X=1 --quant fp --act fp --batch 1
  run fp_b16 X=1 --quant fp --act fp --batch 16 --reps 3
done
