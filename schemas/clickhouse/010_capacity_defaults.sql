-- The idle and online PFLOPS of a capacity sample are derived from its counts and peaks by
-- ClickHouse on insert (the worker sends the counts and the resolved peaks only): one place
-- for the definition of SPEC §4, and fewer columns on the worker's hot path.

ALTER TABLE {db}.capacity_samples
    MODIFY COLUMN idle_pflops_fp16 Float64 DEFAULT (toInt64(devices_online) - toInt64(devices_allocated)) * peak_tflops_fp16 / 1000,
    MODIFY COLUMN idle_pflops_fp32 Float64 DEFAULT (toInt64(devices_online) - toInt64(devices_allocated)) * peak_tflops_fp32 / 1000,
    MODIFY COLUMN idle_pflops_fp64 Float64 DEFAULT (toInt64(devices_online) - toInt64(devices_allocated)) * peak_tflops_fp64 / 1000,
    MODIFY COLUMN online_pflops_fp16 Float64 DEFAULT toInt64(devices_online) * peak_tflops_fp16 / 1000,
    MODIFY COLUMN online_pflops_fp32 Float64 DEFAULT toInt64(devices_online) * peak_tflops_fp32 / 1000,
    MODIFY COLUMN online_pflops_fp64 Float64 DEFAULT toInt64(devices_online) * peak_tflops_fp64 / 1000;
