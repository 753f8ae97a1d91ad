"""Synthetic customer profiles: a conditional tabular GAN beside two baselines, judged on shape, utility and privacy."""
