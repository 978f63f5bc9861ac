"""Evaluation: run a model (with or without a prior) over a task's items, the statistics
(mean@k, pass@k, bootstrap CI, paired tests) and side-by-side comparisons."""
