"""Evaluators: which attempts practice keeps (docs/methods.md §14).

- ``grader``: the world's exact grader (PAE's evaluator with a perfect verdict).
- ``learned``: a small classifier trained on graded attempts, to show what a noisy verifier
  does to self-training: logistic regression (scikit-learn, C = 1) on hashed character
  1–3-grams of the prompt and of the answer (4,096 features each) and the answer's length
  relative to the prompt's. It is fitted once, on attempts at ``calibration`` train inputs
  of their own (graded by the world), and accepts an attempt when its probability of being
  correct is at least 0.5. It never sees a target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EVALUATORS = ("grader", "learned")


def _features(prompts: Sequence[str], answers: Sequence[str]):
    from scipy import sparse
    from sklearn.feature_extraction.text import HashingVectorizer

    hv = HashingVectorizer(analyzer="char", ngram_range=(1, 3), n_features=4096,
                           alternate_sign=False, norm="l2")
    lengths = np.array([[len(a) / max(len(p), 1), float(len(a) == 0)]
                        for p, a in zip(prompts, answers, strict=True)])
    return sparse.hstack([hv.transform(prompts), hv.transform(answers),
                          sparse.csr_matrix(lengths)]).tocsr()


class LearnedEvaluator:
    """Logistic regression on (prompt, answer) features; ``fit`` on graded attempts."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.model = None

    def fit(self, prompts: Sequence[str], answers: Sequence[str], correct: Sequence[bool]) -> dict:
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(correct, dtype=bool)
        if y.all() or not y.any():
            raise ValueError("the learned evaluator needs both correct and wrong graded attempts "
                             f"to learn from; the calibration attempts were all "
                             f"{'correct' if y.all() else 'wrong'}")
        self.model = LogisticRegression(C=1.0, max_iter=2000, random_state=self.seed)
        self.model.fit(_features(prompts, answers), y)
        return {"calibration_attempts": int(len(y)), "calibration_correct": int(y.sum())}

    def accept(self, prompts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the learned evaluator first")
        return self.model.predict_proba(_features(prompts, answers))[:, 1] >= 0.5
