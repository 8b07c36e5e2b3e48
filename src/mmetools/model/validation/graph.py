"""Cycles in a small directed graph, shown the way a user can follow them: ``a -> b -> a``.

Used for steps of one ensemble (nodes are step numbers) and for ensembles that contain each
other (nodes are model names).
"""

from __future__ import annotations

from typing import TypeVar

Node = TypeVar("Node", int, str)


def cycles(edges: dict[Node, list[Node]]) -> list[list[Node]]:
    """One cycle per strongly connected component (Tarjan) that has one; nodes sorted.

    Each cycle starts at the component's smallest node and repeats it at the end.
    """
    index: dict[Node, int] = {}
    low: dict[Node, int] = {}
    stack: list[Node] = []
    on_stack: set[Node] = set()
    components: list[list[Node]] = []

    # Iterative: a chain of thousands of nodes must not hit Python's recursion limit.
    for root in sorted(edges):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[Node, int]] = [(root, 0)]
        while work:
            node, position = work[-1]
            successors = edges.get(node, [])
            if position < len(successors):
                work[-1] = (node, position + 1)
                successor = successors[position]
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, 0))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)

    found = []
    for component in components:
        members = set(component)
        start = min(component)
        if len(component) == 1 and start not in edges.get(start, []):
            continue
        found.append(_path_back(start, members, edges))
    return sorted(found, key=lambda c: c[0])


def _path_back(start: Node, members: set[Node], edges: dict[Node, list[Node]]) -> list[Node]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    previous: dict[Node, Node] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(edges.get(node, [])):
                if successor not in members:
                    continue
                if successor == start:
                    walked_back: list[Node] = []  # node, its predecessor, ... (start excluded)
                    while node != start:
                        walked_back.append(node)
                        node = previous[node]
                    return [start] + walked_back[::-1] + [start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    return [start, start]
