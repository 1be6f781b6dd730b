"""Skills that grow themselves: propose, attempt, verify, train, repeat (docs/methods.md §14).

``attempts.py`` samples K answers per input and computes B-STaR's monitors; ``evaluator.py``
decides which attempts are kept (the world's grader, or a learned classifier);
``loop.py`` runs the rounds and stores each as the next version of the skill.
"""
