"""Print the dependencies that pyproject.toml lists, plus those of the named extras, one a line."""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
requirements = list(project["project"]["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["project"]["optional-dependencies"][extra]
print("\n".join(requirements))
