"""Running a search: the Ray Tune driver (runner), run records and recovery (runs), the
pretrained baselines (references) and the confirmation of a front over new seeds (confirm)."""
