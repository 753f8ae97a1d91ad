"""The two-stage recommender: candidates from several generators, ranked by LightGBM LambdaRank over their features.

`features` (generators and features, torch), `items` (per-item statistics), `trees` (the boosted trees as
torch ops), `network` (the whole ranker as one network, exported like the sequence models), `fit`.
"""
