"""Transferability: which library skill to start from for a new task (docs/methods.md §9).

``estimators`` holds the scores as pure functions of (features, labels); ``rank`` gets the
features of a target task under the base + each candidate skill, ranks the candidates and
(optionally) verifies the ranking by fine-tuning from each.
"""
