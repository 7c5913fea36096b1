"""The shape of the code: no import cycle, stages import only what comes before them,
and the run folder's layout is spelled in one module (`loopnerf/run.py`).

The import graph is read from the source with `ast` (no module is imported), and
counts every import, the lazy ones inside functions too: a cycle hidden in a function
body still ties two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# import name of each source folder (pyproject's package-dir)
PACKAGES = {"loopnerf": REPO / "loopnerf", "loopnerf.kernels": REPO / "kernels", "loopnerf.export": REPO / "export", "loopnerf.viewer": REPO / "viewer"}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, root in PACKAGES.items():
        for f in sorted(root.rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = f
    return mods


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of MODULES that `import name` loads last (a package's __init__ for a
    name defined there)."""
    while name not in MODULES:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in its body)."""
    graph = {}
    for mod, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(_owner(a.name) for a in node.names if a.name.startswith("loopnerf"))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("loopnerf"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    deps.add(sub if sub in MODULES else _owner(node.module))
        deps.discard(None)
        deps.discard(mod)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_lazy_imports():
    graph = import_graph()
    # evaluation.metrics imports the patch matcher inside a function body
    assert "loopnerf.patches" in graph["loopnerf.evaluation.metrics"]
    assert len(MODULES) > 80


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


# A stage may import the stages before it, never the ones after it.
LATER = {
    "loopnerf.data": ("loopnerf.model", "loopnerf.distill", "loopnerf.evaluation", "loopnerf.export", "loopnerf.viewer", "loopnerf.select", "loopnerf.bake", "loopnerf.run"),
    "loopnerf.fields": ("loopnerf.model", "loopnerf.distill", "loopnerf.evaluation", "loopnerf.export", "loopnerf.viewer", "loopnerf.run"),
    "loopnerf.kernels": ("loopnerf.fields", "loopnerf.model", "loopnerf.distill", "loopnerf.evaluation", "loopnerf.export", "loopnerf.viewer"),
    "loopnerf.model": ("loopnerf.distill", "loopnerf.evaluation", "loopnerf.export", "loopnerf.viewer", "loopnerf.select", "loopnerf.bake"),
    "loopnerf.distill": ("loopnerf.evaluation", "loopnerf.export", "loopnerf.viewer", "loopnerf.bake"),
}


@pytest.mark.parametrize("stage", sorted(LATER))
def test_stage_does_not_import_a_later_stage(stage):
    bad = []
    for mod, deps in import_graph().items():
        if mod == stage or mod.startswith(stage + "."):
            bad += [f"{mod} -> {d}" for d in deps if any(d == later or d.startswith(later + ".") for later in LATER[stage])]
    assert not bad, "\n".join(bad)


# File names of the run folder's layout: only loopnerf/run_folder.py spells them.
RUN_LAYOUT_NAMES = {
    "stage1", "segments.json", "segments.png", "scene.loop", "model.safetensors", "ckpt.safetensors",
    "config.json", "eval.json", "eval.png", "summary.json", "bake.json", "scanlines.png", "viewer_truth.json", "log.jsonl",
}
LAYOUT_OWNER = "loopnerf.run_folder"


def layout_paths(tree: ast.AST):
    """(line, text) of the run-layout names used as paths: an operand of `/` (`run /
    "scene.loop"`), or a path string with a layout part ("stage1/config.json"). The same
    words as plain data (a JSON key "stage1") are not paths."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in RUN_LAYOUT_NAMES:
                    yield node.lineno, side.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "/" in node.value and "\n" not in node.value:
            parts = node.value.split("/")
            if len(node.value) < 80 and " " not in node.value and any(p in RUN_LAYOUT_NAMES for p in parts):
                yield node.lineno, node.value


def test_run_layout_is_spelled_in_one_module():
    found = []
    for mod, path in MODULES.items():
        if mod == LAYOUT_OWNER:
            continue
        found += [f"{path.relative_to(REPO)}:{line}: {text!r}" for line, text in layout_paths(ast.parse(path.read_text()))]
    assert not found, "run-folder file names outside loopnerf/run_folder.py:\n" + "\n".join(found)


def test_layout_check_sees_a_literal():
    tree = ast.parse('"""doc: run/scene.loop"""\nx = run / "scene.loop"\ny = "stage1/config.json"\nz = {"stage1": 1}\n')
    assert sorted(t for _, t in layout_paths(tree)) == ["scene.loop", "stage1/config.json"]
