"""rappel's default rules: reminders.yaml, accounts.yaml and templates/ (fr, en, es).

This folder is the administrator's side (the default ``--rules``) and, installed, the package
``rappel_rules`` (pyproject.toml maps it), whose files ``rappel init`` and ``rappel demo`` copy
(service/starter.py). Nothing imports Python from here: this file only makes it a package.
"""
