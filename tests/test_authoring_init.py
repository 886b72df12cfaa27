"""`buraq init`: the scaffold validates and passes its own tests once its plugin is pip-installed."""

from __future__ import annotations

import uuid
from pathlib import Path

from test_plugins import Venv, buraq, run, venv  # noqa: F401  (venv is a fixture)

EXPECTED_FILES = ["pipelines/{n}.yaml", "pipelines/tests/{n}.yaml", "plugins/buraq-{n}/pyproject.toml",
                  "plugins/buraq-{n}/buraq_{n}/__init__.py"]


def test_scaffold_installs_validates_and_passes_its_tests(venv: Venv, tmp_path: Path) -> None:  # noqa: F811
    # Given a fresh folder and a virtualenv without the new plugin
    name = f"demo_{uuid.uuid4().hex[:6]}"
    work = tmp_path / "work"
    work.mkdir()
    # When it is scaffolded
    created = run(venv.python, "-m", "buraq", "init", name, cwd=work)
    assert created.returncode == 0, created.stderr
    files = [path.format(n=name) for path in EXPECTED_FILES]
    assert sorted(created.stdout.split()) == sorted(["created"] * 4 + files)
    assert all((work / f).is_file() for f in files)
    # Then the handler is unknown until the plugin is installed ...
    before = buraq(venv.python, "validate", cwd=work)
    assert before.returncode == 1 and f"unknown handler '{name}.greet'" in before.stderr
    # ... and after a real `pip install -e`, validate and test pass on the scaffold as written
    installed = run(venv.python, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "-e", f"plugins/buraq-{name}", cwd=work)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    validated = buraq(venv.python, "validate", cwd=work)
    assert validated.returncode == 0, validated.stderr
    tested = buraq(venv.python, "test", cwd=work)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count(" PASS\n") == 3 and "== 3 passed in " in tested.stdout
    # The handler's options schema is in force: a wrong option type is a FILE:LINE error
    pipeline = work / "pipelines" / f"{name}.yaml"
    pipeline.write_text(pipeline.read_text().replace(f"${{{name.upper()}_GREETING:Hello}}", "42"))
    broken = buraq(venv.python, "validate", cwd=work)
    assert broken.returncode == 1
    assert f"pipelines/{name}.yaml:13: options.greeting: 42 is not of type 'string'" in broken.stderr


def test_init_refuses_to_overwrite_and_writes_nothing(venv: Venv, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "pipelines" / "tests").mkdir(parents=True)
    (tmp_path / "pipelines" / "tests" / "shop.yaml").write_text("mine\n")
    result = run(venv.python, "-m", "buraq", "init", "shop", cwd=tmp_path)
    assert result.returncode == 1
    assert "init: refusing to overwrite" in result.stderr and "pipelines/tests/shop.yaml" in result.stderr
    assert (tmp_path / "pipelines" / "tests" / "shop.yaml").read_text() == "mine\n"
    assert not (tmp_path / "pipelines" / "shop.yaml").exists() and not (tmp_path / "plugins").exists()


def test_init_refuses_names_that_cannot_be_a_package(venv: Venv, tmp_path: Path) -> None:  # noqa: F811
    for bad in ("Shop", "2shop", "shop-front", "a.b"):
        result = run(venv.python, "-m", "buraq", "init", bad, cwd=tmp_path)
        assert result.returncode == 1, bad
        assert f"init: {bad!r} is not a usable name" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "venv"]
