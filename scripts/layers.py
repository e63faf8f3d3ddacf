#!/usr/bin/env python3
"""The module graph of src/: which top-level module refers to which (`crate::NAME` in code, comments
left out), printed as one line per module, and a check that it has no cycle, that every edge goes
down the declared layering (docs/architecture.md "Layers"; so model/ imports nothing of the runtime or
the planner, and the runtime nothing of the planner), and that the modules inside src/runtime/ refer
to each other without a circle. Exit 1 on a cycle, an upward edge or a knot in the runtime.

    python3 scripts/layers.py          # the graph, then "ok" or the offending edges
    python3 scripts/layers.py planner  # the graph of one folder's modules and its knots (reported only)
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
# Bottom first: a module may refer only to modules before it in this list.
LAYERS = ["error", "precision", "base", "model", "data", "runtime", "planner", "train", "report", "analysis", "cli"]
# Folders whose modules must not refer to each other in a circle.
NO_KNOTS = ["runtime"]
REFERENCE = re.compile(r"\bcrate::([a-z_]+)")
MACROS = {"bail_input"}  # crate-level macros, defined in error.rs


def module_of(path):
    relative = os.path.relpath(path, ROOT)
    first = relative.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def code(text):
    """The text without // comments (doc comments included) and string literals."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def graph():
    edges = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            source = module_of(path)
            if source in ("lib", "main"):
                continue
            with open(path) as f:
                text = code(f.read())
            for target in REFERENCE.findall(text):
                target = "error" if target in MACROS else target
                if target != source:
                    edges.setdefault(source, {}).setdefault(target, set()).add(os.path.relpath(path, ROOT))
    return edges


def cycle(edges):
    """One cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges.get(node, {})):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target, stack + [target])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def graph_inside(folder):
    """Which module of src/FOLDER/ refers to which (`super::NAME` from its top-level files,
    `crate::FOLDER::NAME` anywhere, `super::super::NAME` from one folder down)."""
    base = os.path.join(ROOT, folder)
    edges = {}
    for directory, _, files in os.walk(base):
        for name in files:
            relative = os.path.relpath(os.path.join(directory, name), base)
            source = relative.split(os.sep)[0].removesuffix(".rs")
            if source == "mod" or not name.endswith(".rs"):
                continue
            with open(os.path.join(directory, name)) as f:
                text = code(f.read())
            # A top-level file's parent is the folder; so is a mod.rs one folder down (folder/x/mod.rs).
            top = os.sep not in relative or relative.count(os.sep) == 1 and name == "mod.rs"
            up = r"\bsuper::([a-z_]+)" if top else r"\bsuper::super::([a-z_]+)"
            targets = set(re.findall(rf"\bcrate::{folder}::([a-z_]+)", text)) | set(re.findall(up, text))
            edges.setdefault(source, set()).update(targets - {source})
    return edges


def knots(edges):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, found = {}, {}, [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main_inside(folder):
    edges = graph_inside(folder)
    for source in sorted(edges):
        print(f"{folder}::{source} -> {', '.join(sorted(edges[source])) or '(nothing)'}")
    for knot in knots(edges):
        print(f"knot: {', '.join(knot)} refer to each other")


def main():
    if len(sys.argv) > 1:
        return main_inside(sys.argv[1])
    edges = graph()
    for source in sorted(edges, key=lambda m: LAYERS.index(m) if m in LAYERS else len(LAYERS)):
        print(f"{source} -> {', '.join(sorted(edges[source]))}")
    failures = []
    found = cycle(edges)
    if found:
        failures.append("cycle: " + " -> ".join(found))
    for source, targets in sorted(edges.items()):
        for target, files in sorted(targets.items()):
            if source not in LAYERS or target not in LAYERS:
                failures.append(f"{source} -> {target}: not in the declared layers {LAYERS}")
            elif LAYERS.index(target) > LAYERS.index(source):
                failures.append(f"{source} -> {target} goes up a layer: {', '.join(sorted(files))}")
    for folder in NO_KNOTS:
        for knot in knots(graph_inside(folder)):
            failures.append(f"{folder}: {', '.join(knot)} refer to each other in a circle")
    for failure in failures:
        print("layering:", failure)
    if failures:
        sys.exit(1)
    print("ok: no cycle, every reference goes down a layer, no circle inside " + ", ".join(NO_KNOTS))


if __name__ == "__main__":
    main()
