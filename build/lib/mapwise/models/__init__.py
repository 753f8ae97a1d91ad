"""Sequence recommenders: GRU4Rec-style RNN, Caser-style CNN and SASRec, trained with Lightning."""
