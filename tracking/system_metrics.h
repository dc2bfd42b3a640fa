/* system_metrics.h — samples the machine every few seconds into a tracker, under MLflow's own
 * system metric names: system/cpu_utilization_percentage, system/system_memory_usage_megabytes,
 * system/system_memory_usage_percentage and, where NVML answers (loaded at run time, so a
 * machine without NVIDIA's driver simply has no GPU metrics), system/gpu_<i>_utilization_
 * percentage, system/gpu_<i>_memory_usage_megabytes, system/gpu_<i>_memory_usage_percentage. */
#ifndef KL_SYSTEM_METRICS_H
#define KL_SYSTEM_METRICS_H

#include "tracking/tracker.h"

typedef struct kl_sysmetrics kl_sysmetrics;

/* Starts a sampling thread logging into t every interval_s seconds (step = sample number). */
kl_status kl_sysmetrics_start(kl_tracker *t, double interval_s, kl_sysmetrics **out);

/* Takes a last sample, stops the thread and frees s (NULL is fine). */
void kl_sysmetrics_stop(kl_sysmetrics *s);

#endif
