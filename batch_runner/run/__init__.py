"""One run: the worker pool, one job's lifecycle, the poll planner, progress, cancel, the lock."""
