"""constraints.txt (the exact versions the suite passed with) must pin every requirement inside its range.

A requirement missing from the file would be installed at whatever release is newest on the day, which is what the
file exists to prevent; a pin outside requirements.txt's range would make pip refuse the set-up command.
"""

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def _lines(path):
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            yield line


def test_every_requirement_is_pinned_inside_its_range(repo_root):
    pins = {}
    for line in _lines(repo_root / "constraints.txt"):
        requirement = Requirement(line)
        (spec,) = requirement.specifier  # one == pin per line, nothing else
        assert spec.operator == "==", line
        pins[canonicalize_name(requirement.name)] = spec.version
    for line in _lines(repo_root / "requirements.txt"):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (line, pins[name])
    # the set-up command's torch / torchvision pins must be the ones the file holds
    setup = (repo_root / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[1]
    for word in setup.split():
        if "==" in word:
            name, version = word.split("==")
            assert pins[canonicalize_name(name)] == version, word
