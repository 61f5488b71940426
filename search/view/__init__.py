"""Looking at a study: the HTML report (report) and optuna-dashboard behind a guard (dashboard)."""
