-- One definition of idle and online PFLOPS (SPEC §4): the worker computes them
-- (schemas/metrics.py) and writes every column of capacity_samples; the column defaults of
-- migration 010, a second definition in SQL, are dropped.

ALTER TABLE {db}.capacity_samples
    MODIFY COLUMN idle_pflops_fp16 REMOVE DEFAULT,
    MODIFY COLUMN idle_pflops_fp32 REMOVE DEFAULT,
    MODIFY COLUMN idle_pflops_fp64 REMOVE DEFAULT,
    MODIFY COLUMN online_pflops_fp16 REMOVE DEFAULT,
    MODIFY COLUMN online_pflops_fp32 REMOVE DEFAULT,
    MODIFY COLUMN online_pflops_fp64 REMOVE DEFAULT;
