"""Plugin discovery with real packages, real virtualenvs and real `buraq` subprocesses.

Installed plugins are tested the way users get them: small plugin projects are
built into wheels (``pip wheel``, offline, once per session) and pip-installed
into a fresh virtualenv made for the test. That virtualenv gets buraq and its
dependencies from the development environment through a ``.pth`` file that
calls ``site.addsitedir`` on the dev venv's site-packages (``--system-site-packages``
would only expose the base interpreter's packages, not the dev venv's). So in
the temporary venv, buraq itself and the first-party buraq-jsonl plugin are
present, and the test plugins exist only there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PLUGIN_PROJECTS = {
    # distribution name -> (entry-point name, module name, module source)
    "buraq-test-myplug": ("myplug", "myplug", '''
        import buraq

        def hello(task):
            return {"hello": task.payload}

        async def wave(task):
            return None

        @buraq.hookimpl
        def register_handlers(register):
            register("myplug.hello", hello)
            register("myplug.wave", wave)
    '''),
    "buraq-test-broken": ("brokenplug", "brokenplug", '''
        import buraq

        def helper():
            raise RuntimeError("kaboom while importing brokenplug")

        helper()
    '''),
    "buraq-test-dupplug": ("dupplug", "dupplug", '''
        import buraq

        def also_hello(task):
            return None

        @buraq.hookimpl
        def register_handlers(register):
            register("myplug.hello", also_hello)
    '''),
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BURAQ_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def run(python: str | Path, *args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def buraq(python: str | Path, *args: str, cwd: Path, plugins_dir: Path | None = None,
          **env: str) -> subprocess.CompletedProcess[str]:
    plugins_dir = plugins_dir or cwd / "no-local-plugins"
    return run(python, "-m", "buraq", *args, "--plugins-dir", str(plugins_dir), cwd=cwd, env=clean_env(**env))


def listed(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    assert result.returncode == 0, result.stderr
    return {row["handler"]: row for row in json.loads(result.stdout)}


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One wheel per test plugin project, built offline with the dev venv's setuptools."""
    root = tmp_path_factory.mktemp("plugin-projects")
    sources = []
    for dist, (entry_point, module, source) in PLUGIN_PROJECTS.items():
        project = root / dist
        (project / module).mkdir(parents=True)
        (project / module / "__init__.py").write_text(textwrap.dedent(source))
        (project / "pyproject.toml").write_text(textwrap.dedent(f'''
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "1.2.3"
            dependencies = ["buraq"]

            [project.entry-points.buraq]
            {entry_point} = "{module}"

            [tool.setuptools]
            packages = ["{module}"]
        '''))
        sources.append(str(project))
    out = root / "dist"
    result = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                 "--wheel-dir", str(out), *sources, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    built = {}
    for dist in PLUGIN_PROJECTS:
        [wheel] = out.glob(dist.replace("-", "_") + "-1.2.3-*.whl")
        built[dist] = wheel
    return built


class Venv:
    def __init__(self, root: Path) -> None:
        self.root = root
        bindir = "Scripts" if os.name == "nt" else "bin"
        self.python = root / bindir / ("python.exe" if os.name == "nt" else "python")

    def install(self, *wheels: Path) -> None:
        result = run(self.python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                     "--disable-pip-version-check", *map(str, wheels), cwd=self.root)
        assert result.returncode == 0, result.stdout + result.stderr

    def site_packages(self) -> Path:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        return Path(run(self.python, "-c", code, cwd=self.root).stdout.strip())


@pytest.fixture
def venv(tmp_path: Path) -> Venv:
    """A fresh virtualenv that sees the dev environment's packages but has its own site-packages."""
    root = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    env = Venv(root)
    dev_dirs = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    own = env.site_packages()
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in dev_dirs)
    (own / "zz_buraq_dev_env.pth").write_text(lines)
    return env


def test_pip_installed_plugin_is_listed_with_its_package(venv: Venv, wheels: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    before = listed(buraq(venv.python, "plugins", "--json", cwd=work))
    assert "myplug.hello" not in before

    venv.install(wheels["buraq-test-myplug"])

    rows = listed(buraq(venv.python, "plugins", "--json", cwd=work))
    assert rows["myplug.hello"]["kind"] == "sync"
    assert rows["myplug.wave"]["kind"] == "async"
    plugin = rows["myplug.hello"]["plugin"]
    assert plugin.startswith("myplug ")
    assert "buraq-test-myplug 1.2.3" in plugin
    assert rows["builtin.noop"]["plugin"] == "buraq.builtin.handlers"

    # The plain table shows the same, and `validate` accepts a pipeline using the handler here only.
    table = buraq(venv.python, "plugins", cwd=work)
    assert table.returncode == 0
    assert any(line.split()[:2] == ["myplug.hello", "sync"] for line in table.stdout.splitlines())
    (work / "p.yaml").write_text("name: greet\nhandler: myplug.hello\n")
    assert buraq(venv.python, "validate", "p.yaml", cwd=work).returncode == 0
    outside = buraq(sys.executable, "validate", "p.yaml", cwd=work)
    assert outside.returncode == 1
    assert "p.yaml:2:" in outside.stderr and "myplug.hello" in outside.stderr


def test_plugin_failing_on_import_names_itself(venv: Venv, wheels: dict[str, Path], tmp_path: Path) -> None:
    venv.install(wheels["buraq-test-myplug"], wheels["buraq-test-broken"])

    for command in (["plugins"], ["validate", str(tmp_path)]):
        result = buraq(venv.python, *command, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        err = result.stderr
        assert "brokenplug" in err  # the entry-point name
        assert "buraq-test-broken 1.2.3" in err  # the package it came from
        assert "Traceback" in err and "RuntimeError: kaboom while importing brokenplug" in err
        assert "brokenplug/__init__.py" in err.replace("\\", "/")
        assert "internal error" not in err


def test_buraq_plugins_env_narrows_entry_point_plugins(venv: Venv, wheels: dict[str, Path], tmp_path: Path) -> None:
    venv.install(wheels["buraq-test-myplug"], wheels["buraq-test-broken"])

    only_mine = listed(buraq(venv.python, "plugins", "--json", cwd=tmp_path, BURAQ_PLUGINS="myplug"))
    assert "myplug.hello" in only_mine
    assert "jsonl.append" not in only_mine  # installed, but not asked for

    two = listed(buraq(venv.python, "plugins", "--json", cwd=tmp_path, BURAQ_PLUGINS=" jsonl , myplug "))
    assert {"myplug.hello", "jsonl.append"} <= set(two)

    none = listed(buraq(venv.python, "plugins", "--json", cwd=tmp_path, BURAQ_PLUGINS=""))
    assert set(none) == {"builtin.noop", "builtin.log", "builtin.sleep", "builtin.merge"}  # built-ins always load

    broken = buraq(venv.python, "plugins", "--json", cwd=tmp_path, BURAQ_PLUGINS="myplug,brokenplug")
    assert broken.returncode == 1 and "brokenplug" in broken.stderr


def test_two_plugins_registering_one_handler_name_both(venv: Venv, wheels: dict[str, Path], tmp_path: Path) -> None:
    venv.install(wheels["buraq-test-myplug"], wheels["buraq-test-dupplug"])

    result = buraq(venv.python, "plugins", cwd=tmp_path)
    assert result.returncode == 1
    err = result.stderr
    assert "'myplug.hello'" in err and "registered twice" in err
    assert "buraq-test-myplug" in err and "buraq-test-dupplug" in err
    assert "internal error" not in err

    # Each of them alone is fine.
    for name in ("myplug", "dupplug"):
        assert "myplug.hello" in listed(buraq(venv.python, "plugins", "--json", cwd=tmp_path, BURAQ_PLUGINS=name))


def test_local_plugin_clashing_with_an_installed_one(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "clash.py").write_text(textwrap.dedent('''
        import buraq

        @buraq.hookimpl
        def register_handlers(register):
            register("jsonl.append", print)
    '''))
    result = buraq(sys.executable, "plugins", cwd=tmp_path, plugins_dir=plugins, BURAQ_PLUGINS="jsonl")
    assert result.returncode == 1
    assert "'jsonl.append'" in result.stderr and "registered twice" in result.stderr
    assert "clash.py (local plugin)" in result.stderr and "buraq-jsonl" in result.stderr


def test_local_single_file_plugin_is_listed(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "greet.py").write_text(textwrap.dedent('''
        import buraq

        async def greet(task):
            return "hi"

        def shout(task):
            return "HI"

        @buraq.hookimpl
        def register_handlers(register):
            register("local.greet", greet)
            register("local.shout", shout)
    '''))
    # Not plugins: private modules and other files.
    (plugins / "_helpers.py").write_text("raise RuntimeError('must not be imported')\n")
    (plugins / "notes.txt").write_text("raise RuntimeError\n")

    rows = listed(buraq(sys.executable, "plugins", "--json", cwd=tmp_path, plugins_dir=plugins, BURAQ_PLUGINS=""))
    assert rows["local.greet"]["kind"] == "async"
    assert rows["local.shout"]["kind"] == "sync"
    assert rows["local.greet"]["plugin"] == f"{plugins / 'greet.py'} (local plugin)"

    # The default --plugins-dir is ./plugins, relative to where buraq runs.
    result = run(sys.executable, "-m", "buraq", "plugins", "--json", cwd=tmp_path, env=clean_env(BURAQ_PLUGINS=""))
    assert "local.greet" in listed(result)


def test_local_plugin_failing_on_import_names_the_file(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "leaves.py").write_text("import sys\nsys.exit(0)\n")  # even SystemExit is a plugin error
    result = buraq(sys.executable, "plugins", cwd=tmp_path, plugins_dir=plugins, BURAQ_PLUGINS="")
    assert result.returncode == 1
    assert "leaves.py (local plugin) failed to import" in result.stderr
    assert "SystemExit" in result.stderr and "Traceback" in result.stderr


def test_local_plugin_with_a_bad_hook_signature_is_named(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "wrongargs.py").write_text(textwrap.dedent('''
        import buraq

        @buraq.hookimpl
        def register_handlers(register, extra):
            pass
    '''))
    result = buraq(sys.executable, "plugins", cwd=tmp_path, plugins_dir=plugins, BURAQ_PLUGINS="")
    assert result.returncode == 1
    assert "wrongargs.py (local plugin)" in result.stderr
    assert "extra" in result.stderr
    assert "internal error" not in result.stderr


def test_local_plugin_with_a_typo_in_a_hook_name_is_named(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "typo.py").write_text(textwrap.dedent('''
        import buraq

        @buraq.hookimpl
        def register_handler(register):
            register("typo.never", print)
    '''))
    result = buraq(sys.executable, "plugins", cwd=tmp_path, plugins_dir=plugins, BURAQ_PLUGINS="")
    assert "register_handler" in result.stderr
    assert "typo.py" in result.stderr
    assert "internal error" not in result.stderr
    assert result.returncode == 1


def test_first_party_jsonl_plugin_is_listed_in_the_dev_venv(tmp_path: Path) -> None:
    rows = listed(buraq(sys.executable, "plugins", "--json", cwd=tmp_path))
    assert rows["jsonl.append"]["kind"] == "sync"
    assert rows["jsonl.append"]["plugin"].startswith("jsonl (buraq_jsonl")
    assert "buraq-jsonl" in rows["jsonl.append"]["plugin"]

    # And the repository's own pipelines, one of which uses it, validate.
    result = buraq(sys.executable, "validate", str(ROOT / "pipelines"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok: " in result.stderr and "pipeline(s)" in result.stderr
