"""Campaign targeting: propensity, uplift, next best action, explanations."""
