"""How a model is trained and judged: evaluation rounds, inner folds, fitting, the
hyperparameter search, out-of-fold probabilities, scores, and the ensemble's members.

The layers, each calling the one below: ``train`` (a registered model on every round) ->
``tune`` (the search and the out-of-fold fits inside a round) -> ``fit`` (one estimator
fitted on a round's training part and applied to its validation part).
"""
