"""Package discovery only (everything else is in pyproject.toml): the engine's packages, and
every package under plugins/ as ``civicbot_plugins.<name>``, so a new built-in plugin needs no
hand-kept list. Namespace discovery lists each ``templates/`` folder (data, no ``__init__.py``:
each plugin's and the public pages' ``civicbot/web/templates``) as a package too, so setuptools
ships it instead of warning that it would be left out."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["civicbot", "civicbot.*"], exclude=["*__pycache__*"]),
        "civicbot_plugins",
        *(
            f"civicbot_plugins.{name}"
            for name in find_namespace_packages("plugins", exclude=["*__pycache__*"])
        ),
    ]
)
