"""Updating gates from the dashboard (issue 17): the signed bundles on offer and their URL
(`bundles.py`), which gates a rollout sends to and what each gate's answer means (`plan.py`,
pure), the rollouts kept in the database (`records.py`), moved on by a loop and by the page
(`progress.py`), and the page (`routes.py`)."""
