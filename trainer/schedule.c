/* schedule.c — linear warm-up, then constant or cosine. */
#include "trainer/schedule.h"

#include <math.h>

double kl_schedule_lr(const kl_schedule *s, int64_t step) {
    if (step < s->warmup_steps) return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    if (s->kind == KL_SCHED_CONSTANT) return s->lr;
    int64_t span = s->total_steps - s->warmup_steps;
    if (span <= 1) return s->lr;
    double progress = (double)(step - s->warmup_steps) / (double)(span - 1);
    if (progress > 1.0) progress = 1.0;
    return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * progress));
}
