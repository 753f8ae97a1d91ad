"""Thin DVC stage entry points: `python -m pipelines.<verb>` reads params, calls mapwise, writes outputs."""
