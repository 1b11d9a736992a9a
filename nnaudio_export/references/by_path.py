"""Loading one file of an installed package by path, without the package's ``__init__``
(which would import what is not installed here: the whole NeMo toolkit, torchaudio, ...).
Used by :mod:`.nemo` and :mod:`.vocos`."""
import contextlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Dict, Iterator, Union


@contextlib.contextmanager
def placeholder_modules(placeholders: Dict[str, types.ModuleType]) -> Iterator[None]:
    """``sys.modules`` holds ``placeholders`` for the duration of the block; whatever was
    there before (or nothing) is put back afterwards, even on error."""
    saved = {name: sys.modules.get(name) for name in placeholders}
    sys.modules.update(placeholders)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def load_file(alias: str, path: Union[str, Path]) -> types.ModuleType:
    """Execute the file ``path`` as a module named ``alias`` and register it under that name."""
    spec = importlib.util.spec_from_file_location(alias, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[alias] = module
    return module
