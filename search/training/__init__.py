"""Training a network: the recipe (recipe), the augmentations (augment) and the composer
trainer with its algorithms and evaluation (train)."""
