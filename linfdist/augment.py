"""Training-time augmentation as the authors' loaders do it: random shifts (RandomCrop with padding)
and horizontal flips, drawn from an explicit generator so a resumed run draws the same ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator, padding: str = "zeros") -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels, as RandomCrop(size, padding=pad, padding_mode=...):
    ``padding`` "zeros" fills the border with 0, "edge" repeats the edge pixels (v2's setting)."""
    if pad == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate" if padding == "edge" else "constant")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left to right."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment(x: torch.Tensor, recipe, generator: torch.Generator) -> torch.Tensor:
    """The recipe's augmentation of one batch: shifts, then flips where the recipe asks for them."""
    x = random_crop(x, recipe.crop_pad, generator, recipe.crop_padding)
    return random_flip(x, generator) if recipe.flip else x
