"""prepare_model: a model source -> data/models/<model>/base (safetensors + tokenizer)."""
from __future__ import annotations

from ..models import prepare_model


def run(a) -> None:
    prepare_model(a.source, a.out)
