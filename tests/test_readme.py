"""The README's three commands are the ones CI runs."""


def readme_commands(repo_root):
    text = (repo_root / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_starts_with_three_commands_and_ci_runs_setup_and_tests(repo_root):
    setup, main_job, tests = readme_commands(repo_root)
    ci = (repo_root / ".ci" / "run").read_text()
    assert setup.replace("python -m pip install", "python -m pip install -q") in ci
    assert tests in ci
    assert "train_net.py" in main_job and "make_toy_dataset.py" in main_job
