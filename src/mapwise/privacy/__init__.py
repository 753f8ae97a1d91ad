"""Privacy: keyed pseudonyms, forgetting customers, consent, k-anonymity, scans for personal data."""
