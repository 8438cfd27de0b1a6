import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    text = README.read_text()
    (block,) = re.findall(r"## Quickstart in Python\n\n```python\n(.*?)```", text, re.S)
    assert '["train.steps=300"]' in block
    block = block.replace(
        '["train.steps=300"]', '["train.steps=1", "train.device=cpu", "train.eval_batch_size=8"]'
    )
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README quickstart", "exec"), scope)
    assert scope["units"].shape == (8, 20)
    assert scope["tokens"].shape == (8, 20, 16)
    assert scope["result"].step == 1


def test_ci_runs_the_readme_test_command():
    """CI must run what the README tells a user to run for the tests."""
    (block,) = re.findall(r"## Two commands\n.*?```bash\n(.*?)```", README.read_text(), re.S)
    (command,) = [line.split("#")[0].strip() for line in block.splitlines() if "test" in line.split("#")[0]]
    ci_lines = [line.strip() for line in (README.parent / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
