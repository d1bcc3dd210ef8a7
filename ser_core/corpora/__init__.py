"""Corpus adapters, one module per corpus, each reading the corpus's official layout."""
from __future__ import annotations

import importlib

from ._scan import NOT_A_FILE
from .base import CorpusAdapter, CorpusError, Utterance

# name -> "module:Class"; imported lazily so one broken adapter never hides the others.
_ADAPTERS: dict[str, str] = {
    "ravdess": "ser_core.corpora.ravdess:RavdessAdapter",
    "tess": "ser_core.corpora.tess:TessAdapter",
    "savee": "ser_core.corpora.savee:SaveeAdapter",
    "cremad": "ser_core.corpora.cremad:CremaDAdapter",
    "emodb": "ser_core.corpora.emodb:EmoDBAdapter",
    "iemocap": "ser_core.corpora.iemocap:IemocapAdapter",
    "synthetic": "ser_core.corpora.synthetic:SyntheticAdapter",
}


def adapter_names() -> list[str]:
    return sorted(_ADAPTERS)


def get_adapter(name: str) -> CorpusAdapter:
    key = name.lower().replace("-", "")
    if key not in _ADAPTERS:
        raise CorpusError(f"unknown corpus {name!r}; known corpora: {', '.join(adapter_names())}")
    module_name, class_name = _ADAPTERS[key].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


__all__ = ["NOT_A_FILE", "CorpusAdapter", "CorpusError", "Utterance", "adapter_names", "get_adapter"]
