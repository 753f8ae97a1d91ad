"""Privacy: pseudonymisation of customer ids."""
