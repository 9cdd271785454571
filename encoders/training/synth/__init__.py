"""Synthetic document generator: families x templates x fills, clean specimen images.

`render_document(family, template_seed, fill_seed, scale)` -> BGR uint8.
A (family, template_seed) pair is one document *type*; fill_seed varies only content.
"""
from .families import FAMILIES, HELDOUT_FAMILIES, TRAIN_FAMILIES, Family, render_document, rngs
from .fonts import get_font, list_fonts

__all__ = ["FAMILIES", "TRAIN_FAMILIES", "HELDOUT_FAMILIES", "Family", "render_document", "rngs", "list_fonts", "get_font"]
