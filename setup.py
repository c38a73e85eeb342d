"""Package discovery only (everything else is in pyproject.toml): the engine's packages, and
every package under plugins/ as ``civicbot_plugins.<name>``, so a new built-in plugin needs no
hand-kept list."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["civicbot", "civicbot.*"]),
        "civicbot_plugins",
        *(f"civicbot_plugins.{name}" for name in find_packages("plugins")),
    ]
)
