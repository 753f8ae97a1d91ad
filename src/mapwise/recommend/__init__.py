"""Recommenders: splits, sequence models, baselines, honest evaluation, tuning."""
