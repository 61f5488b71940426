"""A candidate's network exactly as it is trained and shipped: the spec built, then the
recipe's model surgery. What the pipeline trains, the screen times and a stored trial
rebuilds (:meth:`search.study.record.TrialRecord.build_network`); it knows nothing of the study.
"""

from __future__ import annotations

import torch

from castmodels import ArchSpec, build_model
from search.training.recipe import TrainRecipe
from search.training.train import prepare_model

__all__ = ["build_candidate", "input_shape"]


def input_shape(recipe: TrainRecipe) -> tuple[int, int, int]:
    """(channels, height, width) of one image the recipe's network takes."""
    return (recipe.channels, recipe.image_size, recipe.image_size)


def build_candidate(arch: ArchSpec, recipe: TrainRecipe, num_classes: int) -> torch.nn.Module:
    """The network exactly as it is trained and shipped: spec + the recipe's model surgery."""
    model = build_model(arch, recipe.channels, num_classes, image_size=recipe.image_size)
    return prepare_model(model, recipe)
