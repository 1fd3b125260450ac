"""Unit tests for peer_check.score (run: VENV/bin/python -m unittest discover bench).

Synthetic rows, no model needed: exact log-probabilities as logits must score 0 and agree
everywhere; a known shift must show up as a known mean; near ties must not count.
"""

import math
import unittest

import numpy as np

import peer_check

VOCAB = 8


def dist(top):
    """A log-probability vector over VOCAB ids whose top entries are `top` ({id: logprob})."""
    rest = 1.0 - sum(math.exp(v) for v in top.values())
    others = [i for i in range(VOCAB) if i not in top]
    lp = np.full(VOCAB, math.log(rest / len(others)))
    for i, v in top.items():
        lp[i] = v
    return lp


def row(prompt, dists):
    gen = [int(max(d, key=d.get)) for d in dists]
    steps = [
        {"id": g, "top": [{"id": i, "logprob": v} for i, v in sorted(d.items(), key=lambda kv: -kv[1])]}
        for g, d in zip(gen, dists)
    ]
    return {"prompt_ids": prompt, "generated_ids": gen, "steps": steps}


def exact(rows):
    """logits_for that returns the reference distributions at the right positions."""
    table = {}
    for r in rows:
        n = len(r["prompt_ids"])
        m = np.zeros((n + len(r["generated_ids"]), VOCAB))
        for i, s in enumerate(r["steps"]):
            m[n + i - 1] = dist({t["id"]: t["logprob"] for t in s["top"]})
        table[tuple(r["prompt_ids"] + r["generated_ids"])] = m
    return lambda tokens: table[tuple(tokens)]


CLEAR = {3: math.log(0.6), 5: math.log(0.2)}  # margin log 3 ~ 1.1
TIE = {1: math.log(0.4), 2: math.log(0.38)}  # margin ~ 0.05 < 0.1


class ScoreTests(unittest.TestCase):
    def check(self, rows, logits_for, expect):
        got = peer_check.score(rows, logits_for)
        for k, v in expect.items():
            if isinstance(v, float):
                self.assertAlmostEqual(got[k], v, places=5, msg=k)
            else:
                self.assertEqual(got[k], v, msg=k)

    def test_exact_logits_score_zero_and_agree(self):
        rows = [row([0, 4], [CLEAR, TIE, CLEAR])]
        self.check(rows, exact(rows), {"mean_abs_dlogprob": 0.0, "argmax_agreement_outside_near_ties": "2/2", "ok": True})

    def test_logits_are_normalised_so_an_offset_is_free(self):
        rows = [row([0], [CLEAR])]
        f = exact(rows)
        self.check(rows, lambda t: f(t) + 7.0, {"mean_abs_dlogprob": 0.0, "ok": True})

    def test_wrong_argmax_counts_only_outside_near_ties(self):
        rows = [row([0], [CLEAR, TIE])]
        swapped = {3: math.log(0.2), 5: math.log(0.6)}
        f = exact(rows)

        def bad(tokens):
            m = f(tokens).copy()
            m[0] = dist(swapped)
            m[1] = dist({1: math.log(0.38), 2: math.log(0.4)})
            return m

        # step 0: the two top ids swap, |d| = log 3 each, out of 2 ids listed; step 1: |d| ~ 0.05 twice
        d0 = math.log(3.0)
        d1 = abs(math.log(0.4) - math.log(0.38))
        self.check(rows, bad, {"mean_abs_dlogprob": (2 * d0 + 2 * d1) / 4, "argmax_agreement": 0, "argmax_steps": 1, "ok": False})

    def test_first_generated_token_is_predicted_by_last_prompt_position(self):
        rows = [row([9, 9, 9], [CLEAR])]
        f = exact(rows)

        def shifted(tokens):
            return np.roll(f(tokens), 1, axis=0)  # off by one position

        got = peer_check.score(rows, shifted)
        self.assertGreater(got["mean_abs_dlogprob"], 0.5)


if __name__ == "__main__":
    unittest.main()
