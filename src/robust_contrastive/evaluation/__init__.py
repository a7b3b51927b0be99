"""Evaluation: linear probes, fine-tuning, smoothed inference and robustness reports."""
