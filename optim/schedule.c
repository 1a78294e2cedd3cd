/* schedule.c - learning-rate schedules over fractional epochs (see optim.h).
 *
 * A pure function of (t, total): the trainer calls it every step with
 * t = epoch + batch/batches, so resuming from a checkpoint needs no schedule state.
 */
#include <math.h>

#include "optim.h"

float apb_sched_lr(apb_sched_kind k, float base_lr, double t, double total, double warmup,
                   double step_every, float step_gamma)
{
    if (t < 0)
        t = 0;
    if (warmup > 0 && t < warmup)
        return (float)(base_lr * (t / warmup));
    switch (k) {
    case APB_SCHED_CONST:
        return base_lr;
    case APB_SCHED_COSINE: {
        double span = total - (warmup > 0 ? warmup : 0);
        if (span <= 0)
            return base_lr;
        double p = (t - (warmup > 0 ? warmup : 0)) / span;
        if (p > 1)
            p = 1;
        return (float)(base_lr * 0.5 * (1.0 + cos(M_PI * p)));
    }
    case APB_SCHED_STEP:
        if (step_every <= 0)
            return base_lr;
        return (float)(base_lr * pow((double)step_gamma, floor(t / step_every)));
    }
    return base_lr;
}
