"""The engine registry: which engines exist, their exact versions, and opening one.

Two engines: ``libsass`` (a killable child process, :mod:`.libsass.process`) and
``dart-sass`` (a long-lived Dart Sass compiler, :mod:`.dart.engine`). :func:`open_engine`
picks one and :func:`engine_version` gives the exact version that goes into every compile
key. The Dart Sass engine is imported only when it is asked for.
"""

from __future__ import annotations

from ..errors import InvalidInput
from ..settings import Settings
from .base import Engine
from .libsass.process import EngineProcess

ENGINES = ("libsass", "dart-sass")


def engine_version(name: str = "libsass") -> str:
    """The exact version string of an engine, part of every compile key.

    Raises ConfigError when the engine cannot run on this machine (dart-sass without a
    bundled binary for the platform), InvalidInput for an unknown name.
    """
    if name == "dart-sass":
        from .dart.compiler import dart_sass_version

        return dart_sass_version()
    if name != "libsass":
        raise InvalidInput(f"engine {name!r} is not available; choose one of {', '.join(ENGINES)}")
    import sass

    return f"libsass-python {sass.__version__} / libsass {sass.libsass_version}"


def open_engine(settings: Settings, name: str) -> Engine:
    """A new (lazily started) engine of the given name for this process."""
    if name == "dart-sass":
        from .dart.engine import DartSassEngine

        return DartSassEngine(settings)
    return EngineProcess(settings, name)
