"""Sequence recommenders (GRU4Rec, Caser, SASRec, RepeatNet), their losses and training with Lightning."""
