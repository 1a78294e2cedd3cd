/* test_quant_prune_binary.c - pruning + binarization (layers/quant_prune_binary.c):
 * forward against its formula (scale = mean |w| over the kept weights, per layer
 * and per channel, pruned weights exactly 0, sgn(0) = +1, a channel with nothing
 * kept all 0) and the backward STE g * mask. */
#include <math.h>
#include <stdlib.h>

#include "arena.h"
#include "quant.h"
#include "rng.h"
#include "test.h"

APB_TEST(test_quant_prune_binary_formula)
{
    apb_arena a;
    apb_arena_init(&a, "pb", 1 << 20);
    apb_graph g;
    apb_rng r;
    apb_rng_seed(&r, 3);
    apb_graph_init(&g, &a, 1, 1, &r);
    enum { M = 3, K = 17 };
    float mask[M * K], gy[M * K];
    for (int i = 0; i < M * K; i++) {
        mask[i] = (float)(i % 3 != 0 && i / K != 2); /* channel 2: nothing kept */
        gy[i] = (float)apb_rng_normal(&r);
    }
    for (int pc = 0; pc < 2; pc++) {
        apb_var w;
        CHECK_OK(apb_param_init(&w, "w", 2, (int[]){M, K}));
        for (int i = 0; i < M * K; i++)
            w.data[i] = (float)apb_rng_normal(&r) * (float)(1 + i / K);
        w.data[1] = 0.0f;  /* kept, sgn(0) = +1 */
        w.data[2] = -0.0f; /* kept */
        apb_var *q;
        CHECK_OK(apb_quant_prune_binary(&g, &w, mask, pc, &q));
        for (int c = 0; c < M; c++) {
            double s = 0;
            int kept = 0, lo = pc ? c * K : 0, hi = pc ? (c + 1) * K : M * K;
            for (int i = lo; i < hi; i++)
                if (mask[i] != 0.0f) {
                    s += fabs((double)w.data[i]);
                    kept++;
                }
            float sc = (float)(kept ? s / kept : 0.0);
            for (int k = 0; k < K; k++) {
                int i = c * K + k;
                float want = mask[i] == 0.0f ? 0.0f : (w.data[i] >= 0.0f ? sc : -sc);
                CHECK_MSG(q->data[i] == want, "pc=%d i=%d got %g want %g", pc, i, q->data[i], want);
            }
        }
        CHECK(q->data[1] > 0 && q->data[2] > 0);
        CHECK_OK(apb_backward_from(&g, q, gy));
        for (int i = 0; i < M * K; i++)
            CHECK_MSG(w.grad[i] == gy[i] * mask[i], "pc=%d grad[%d] %g want %g", pc, i, w.grad[i],
                      gy[i] * mask[i]);
        apb_param_free(&w);
        apb_graph_reset(&g);
    }
    apb_graph_free(&g);
    apb_arena_free(&a);
    return 0;
}
