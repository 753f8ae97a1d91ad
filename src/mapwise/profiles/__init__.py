"""Customer profiles: RFM, value, interests, sequences, traits, as of a cutoff."""
