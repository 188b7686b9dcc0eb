"""Shared test setup: a persistent XLA compilation cache for the whole session.

The end-to-end tests start many `python -m mmjax.main` subprocesses with the same tiny model;
they inherit this environment, so each compiles the train step once per session, not per run.
"""

import os
import tempfile

_CACHE = tempfile.mkdtemp(prefix="mmjax-test-xla-cache-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
