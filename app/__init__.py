"""The composition root: the one place that wires the product to its platform simulator.

``fieldbot`` (the console script) is ``app.cli:main``: the product's commands from
``bot.cli`` plus ``demo``, which runs the bot beside the simulator. Nothing below this package
imports ``simulator`` (an import-linter contract says so)."""
