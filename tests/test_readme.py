"""The README is the front door: its commands must be the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    setup, tests = blocks[0].strip(), blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup.endswith("&& python -m vmdm.train"), setup
    install = setup[: -len(" && python -m vmdm.train")]
    assert install in ci, f"CI does not run the README's install command:\n{install}"
    assert tests in ci, f"CI does not run the README's test command:\n{tests}"
    assert "--benchmark-skip" in tests
    # Without a visible GPU the default install skips the CUDA kernels; CI must still compile them.
    assert "export VMDM_CUDA=1" in ci.split(install)[0], "CI must build the CUDA kernels (VMDM_CUDA=1)"


def test_kernel_docs_example_runs():
    """The kernel example in docs/kernels.md (moved there from the README) is real code."""
    text = (ROOT / "docs" / "kernels.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(example, "docs/kernels.md", "exec"), namespace)  # noqa: S102 - our own docs
    assert namespace["targets"].shape == (64, 196, 22, 3)
    assert namespace["joints"].grad is not None and namespace["joints"].grad.abs().sum() > 0


def _anchors(md: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    md = re.sub(r"```.*?```", "", md, flags=re.S)
    heads = re.findall(r"^#+\s+(.*)$", md, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_relative_links_in_readme_and_docs_resolve():
    files = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for f in files:
        text = re.sub(r"```.*?```", "", f.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked here
            path, _, anchor = target.partition("#")
            dest = (f.parent / path).resolve() if path else f
            if not dest.exists():
                broken.append(f"{f.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
                broken.append(f"{f.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_documented_command_names_a_module_that_exists():
    """``python -m X`` in the README, docs and help texts must name a runnable module."""
    import importlib.util

    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "vmdm").rglob("*.py"))]
    missing = set()
    for f in texts:
        for mod in re.findall(r"python -m ((?:vmdm_kernels|vmdm|bench)(?:\.\w+)+)", f.read_text()):
            spec = importlib.util.find_spec(mod)
            is_pkg = spec is not None and spec.submodule_search_locations is not None
            if spec is None or (is_pkg and importlib.util.find_spec(mod + ".__main__") is None):
                missing.add(f"{f.relative_to(ROOT)}: python -m {mod}")
    assert not missing, "\n".join(sorted(missing))
