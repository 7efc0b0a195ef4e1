"""lat: LookAhead Tuning — safety-preserving fine-tuning of chat LLMs with partial answer previews.

The package is a house with floors; a module imports only from its own floor or lower ones
(``tests/test_layers.py`` enforces it, imports inside functions included)::

    core        errors, atomic file writes, cache folders, the registry, precision
    config      schema (dataclasses + validation), composition of YAML layers, cache identities, secrets
    data        records, tasks, preview strategies, chat formatting, the datamodule
    models      loading, LoRA, the LightningModule, losses, divergence math
    evaluation  generation, judges, benchmarks, the Evaluator
    callbacks   every Lightning Callback: divergence monitor, drift alarm, graceful stop, packing check, evaluation
    runs        the run-folder format: writing and reading runs/<name>/
    reporting   statistics, tables, plots, the map, notebook helpers (reads runs)
    workflows   recipes read top to bottom: seed, train, evaluate, align, experiment (``lat run``), sweep
    cli         the ``lat`` console script: parses, then calls one workflow
"""

__version__ = "0.1.0"

LAYERS = ("core", "config", "data", "models", "evaluation", "callbacks", "runs", "reporting", "workflows", "")
"""The floors from the bottom up; ``""`` is the top: ``lat.cli`` and ``lat.__main__``."""
