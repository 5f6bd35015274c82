"""Evaluation: retrieval and tactic scores of held-out theorems, accuracy matrices, lifelong metrics."""
