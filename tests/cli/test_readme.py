"""The README's commands stay true: the run/test commands at the top exist and are
executable, the quick-start lines name existing examples and the demo organization that
``scripts/demo`` creates, with the Salesforce org id the examples carry."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_run_and_test_commands_come_first_and_are_executable() -> None:
    first = _blocks()[0]
    assert [line.split()[0] for line in first.strip().splitlines()] == [
        "scripts/demo",
        "scripts/test",
    ]
    for script in ("scripts/demo", "scripts/test", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), script
    assert "scripts/test" in (ROOT / ".ci/run").read_text()


def test_quick_start_posts_existing_examples_to_the_demo_organization() -> None:
    lines = [b for b in _blocks() if "curl" in b][0].strip().splitlines()
    posted = [re.search(r"@(examples/\S+)", line) for line in lines if line.startswith("curl")]
    assert [m.group(1) for m in posted if m] == [
        "examples/01-create-users.xml",
        "examples/02-update-user.xml",
        "examples/03-deactivate-user.xml",
    ]
    for line in lines:
        if line.startswith("curl"):
            assert line.endswith('"$(.venv/bin/agent-provision org url demo)"')
    assert lines[-1] == ".venv/bin/agent-provision users demo --json"
    for name in ("01-create-users.xml", "02-update-user.xml", "03-deactivate-user.xml"):
        assert (ROOT / "examples" / name).is_file()


def test_demo_script_registers_the_org_the_examples_name() -> None:
    demo = (ROOT / "scripts/demo").read_text()
    org_id = re.search(r"DEMO_SALESFORCE_ORG_ID=(\w+)", demo)
    assert org_id is not None
    for path in (ROOT / "examples").glob("*.xml"):
        assert f"<OrganizationId>{org_id.group(1)}</OrganizationId>" in path.read_text()
    assert "DEMO_ORG=demo" in demo and "PORT=8000" in demo and "HOST=127.0.0.1" in demo
