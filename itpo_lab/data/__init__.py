"""Dataset recipes: the D4RL-style levels collected from the committed behaviour policies, the behaviour
exports they come from, their reference scores and the ``docs/datasets.md`` table."""
