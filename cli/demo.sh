#!/bin/sh
# demo.sh - `make demo`: the whole apb story on the full Fashion-MNIST in minutes.
#
# Trains a full-precision convnet from scratch, then, starting from it, a plain
# binary convnet, an APB convnet at 1.3 bits/weight (compressed layers) and the
# same APB convnet with binary activations (where the bit kernels pay off), all
# through `apb report`, which exports every model to .apb, measures accuracy,
# paper-formula memory, file size and batch-1 latency, and draws the trade-off
# plot. Then it classifies a few test images with the exported APB model through
# the deployable runtime (`apb infer`).
#
# Usage: sh cli/demo.sh [path/to/apb]   (the Makefile passes build/apb)
# Environment: APB_DEMO_OUT (default runs/demo), APB_DEMO_EPOCHS (fp epochs,
# default 3), APB_DEMO_FT_EPOCHS (compressed epochs, default 2), APB_DEMO_METHODS
# (default fp,binary,apb,apb-actbin; drop apb-actbin to save a quarter), APB_DEMO_ARGS
# (extra `apb report` options, e.g. "--limit-train 2000" for a quick check).
# Re-running reuses the finished checkpoints in APB_DEMO_OUT (and resumes an
# interrupted one); remove the directory to train afresh.
set -e

APB=${1:-build/apb}
OUT=${APB_DEMO_OUT:-runs/demo}
EPOCHS=${APB_DEMO_EPOCHS:-3}
FT_EPOCHS=${APB_DEMO_FT_EPOCHS:-2}
METHODS=${APB_DEMO_METHODS:-fp,binary,apb,apb-actbin}
BUDGET=1.3

if [ ! -x "$APB" ]; then
    echo "demo: $APB not found or not executable (run make first)" >&2
    exit 1
fi

start=$(date +%s)
echo "== apb demo: Fashion-MNIST (60,000 train / 10,000 test images), convnet"
echo "== full precision: $EPOCHS epochs from scratch; binary, APB ($BUDGET bits/weight) and APB with"
echo "   binary activations: $FT_EPOCHS epochs each, initialised from the fp model"
echo "== output: $OUT"

"$APB" report --data fashion-mnist --model convnet --out "$OUT" \
    --methods "$METHODS" --budgets "$BUDGET" --actbin-budget "$BUDGET" \
    --epochs "$EPOCHS" --ft-epochs "$FT_EPOCHS" $APB_DEMO_ARGS

echo
echo "== a few test images, classified by the exported APB model through libapbrt"
"$APB" data fashion-mnist --split test --dump 4 "$OUT/images" > "$OUT/images.txt"
tail -n 1 "$OUT/images.txt"
"$APB" infer "$OUT/apb$BUDGET/model.apb" "$OUT"/images/*.png

echo
echo "== trade-off (accuracy on the 10,000 test images; bits/weight by the paper formula"
echo "   over the compressed layers; file bytes of the exported .apb; latency at batch 1)"
cat "$OUT/tradeoff.md"
echo
echo "plot:   $OUT/tradeoff.png"
echo "models: $OUT/*/model.apb"
echo "demo finished in $(( $(date +%s) - start )) s"
