/* schedule.h — learning rate as a function of the step. */
#ifndef KL_SCHEDULE_H
#define KL_SCHEDULE_H

#include <stdint.h>

typedef enum {
    KL_SCHED_CONSTANT = 0, /* lr after warm-up */
    KL_SCHED_COSINE = 1,   /* cosine decay from lr to min_lr over the steps after warm-up */
} kl_sched_kind;

typedef struct {
    kl_sched_kind kind;   /* shape */
    double lr;            /* peak learning rate */
    double min_lr;        /* cosine floor */
    int64_t warmup_steps; /* linear ramp from lr/warmup to lr */
    int64_t total_steps;  /* steps in the whole run (cosine horizon) */
} kl_schedule;

/* Learning rate for 0-based step. */
double kl_schedule_lr(const kl_schedule *s, int64_t step);

#endif
