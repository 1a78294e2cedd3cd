#!/bin/sh
# Training speed against the PyTorch anchors (issue 17): ROUNDS rounds (default 3),
# each timing PyTorch (../shared/anchors/bench_torch.py resnet20 / vggsmall,
# bench_torch_r18_train.py --batch 32; glibc tunables of the anchors' README) and
# `apb bench train` on the same models, fp and APB + binary activations, 2 threads.
# The order rotates between rounds (PyTorch first, apb first, ...): a run right
# after another heavy process was seen to be slower on a shared host. Prints one
# line per run: "R<round> <label> <images/s>". MODELS="resnet20 vgg-small resnet18"
# by default. Run from anywhere after `make`; needs /usr/bin/python3 with
# python3-torch (the anchor only, not apb).
cd "$(dirname "$0")/.."
N=./build/apb
TUN=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296
apb_run() { # label model quant act
  v=$($N bench train --model "$2" --quant "$3" --act "$4" --threads 2 2>&1 | grep -o 'images_per_s=[0-9.]*' | head -1 | cut -d= -f2)
  echo "R$r $1 $v"
}
torch_run() { # label model
  case $2 in
    resnet18) v=$(GLIBC_TUNABLES=$TUN /usr/bin/python3 ../shared/anchors/bench_torch_r18_train.py --threads 2 --batch 32 2>&1 | grep RESULT | grep -o '"images_per_s": [0-9.]*' | cut -d' ' -f2) ;;
    vgg-small) v=$(GLIBC_TUNABLES=$TUN /usr/bin/python3 ../shared/anchors/bench_torch.py vggsmall --threads 2 2>&1 | grep RESULT | grep -o '"images_per_s_median": [0-9.]*' | head -1 | cut -d' ' -f2) ;;
    *) v=$(GLIBC_TUNABLES=$TUN /usr/bin/python3 ../shared/anchors/bench_torch.py "$2" --threads 2 2>&1 | grep RESULT | grep -o '"images_per_s_median": [0-9.]*' | head -1 | cut -d' ' -f2) ;;
  esac
  echo "R$r $1 $v"
}
for r in $(seq ${ROUNDS:-3}); do
  for m in ${MODELS:-resnet20 vgg-small resnet18}; do
    if [ $((r % 2)) = 1 ]; then torch_run torch_$m $m; fi
    apb_run apb_fp_$m $m fp fp
    apb_run apb_bin_$m $m apb binary
    if [ $((r % 2)) = 0 ]; then torch_run torch_$m $m; fi
  done
done
