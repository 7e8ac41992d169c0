"""Activation memory planning: where each tensor lives in one arena.

A *buffer* is a block of bytes needed from operator ``first`` to operator
``last`` (inclusive, positions in the execution order). Two buffers whose time
ranges overlap must not overlap in memory; the arena is the highest
``offset + size``. The model's input and output buffers are inside the arena
(the model cards' "input/output allocated" convention): the input is live from
the start, the outputs until the end. Sizes are rounded up to 16 bytes, TFLM's
buffer alignment.

Planners, from the reference to ours:

- :func:`tflm_greedy` -- TensorFlow Lite Micro's ``GreedyMemoryPlanner``
  (``greedy_memory_planner.cc``): buffers sorted by size, largest first (a
  stable sort of the buffers in *reverse* order of addition, as TFLM fills its
  sort array from the tail), each placed at the lowest offset where it fits
  between the already placed buffers that are live at the same time. Buffers
  are added in tensor-id order, as TFLM's allocator adds them.
- :func:`plan_offsets` -- ours: the same placement tried with several orders
  (size, size x lifetime, lifetime, first use, operator "breadth") and two gap
  rules (first fit and best fit: the smallest gap that holds the buffer), then
  a local search that moves buffers earlier in the placement order; the best
  plan is kept, and the search stops as soon as a plan reaches the lower bound.
- :func:`search_orders` -- execution-order search for branching graphs (fire
  modules, squeeze-excitation, residuals): a beam search over topological
  orders, merging the orders that have run the same set of operators (their
  live tensors are then the same) and keeping those with the lowest peak of
  live bytes so far.

:func:`lower_bound` is the largest sum of live buffers at one operator: no
placement of that order can use less. Reshape-like operators may alias their
input (``alias_reshapes``): TFLM's RESHAPE kernel skips its copy when input and
output share memory, which an offline plan can ask for.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

__all__ = [
    "Buffer",
    "Plan",
    "ALIGNMENT",
    "lifetimes",
    "tflm_greedy",
    "place",
    "plan_offsets",
    "lower_bound",
    "live_bytes_per_op",
    "search_orders",
    "check_plan",
]

ALIGNMENT = 16  # TFLM's MicroArenaBufferAlignment()


@dataclass(frozen=True)
class Buffer:
    """``size`` bytes live from operator position ``first`` to ``last`` (inclusive)."""

    name: str
    size: int
    first: int
    last: int
    tensors: tuple[int, ...] = ()  # graph tensor ids sharing this buffer

    def overlaps(self, other: "Buffer") -> bool:
        return not (self.last < other.first or other.last < self.first)


@dataclass
class Plan:
    """Offsets for ``buffers``; ``arena`` is the highest end."""

    buffers: list[Buffer]
    offsets: list[int]
    method: str = ""
    order: list[int] = field(default_factory=list)  # execution order the buffers come from (op indices)

    @property
    def arena(self) -> int:
        return max((o + b.size for o, b in zip(self.offsets, self.buffers)), default=0)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a if a > 1 else n


# -- lifetimes ----------------------------------------------------------------------------
def lifetimes(graph, order=None, *, alias_reshapes: bool = False, alignment: int = ALIGNMENT) -> list[Buffer]:
    """The buffers of ``graph``'s activations when its operators run in ``order``.

    ``order`` is a list of op indices (default: the graph's). Buffers come in
    tensor-id order (TFLM adds them so). Tensors merged by aliasing share one
    buffer (the union of their lifetimes, the largest size).
    """
    order = list(range(len(graph.ops))) if order is None else list(order)
    const = {t for t, tt in graph.tensors.items() if tt.const}
    first, last = _live_ranges(graph, order, const)
    size = {t: graph.tensors[t].nbytes for t in first}
    parent = {t: t for t in first}  # union-find over tensors that share memory
    if alias_reshapes:
        _alias_reshapes(graph, order, const, size, last, parent)
    groups: dict[int, list[int]] = {}
    for t in sorted(first):
        groups.setdefault(_find(parent, t), []).append(t)
    buffers = []
    for root in sorted(groups):
        ts = groups[root]
        sz = max(size[t] for t in ts)
        if sz > 0:
            f, l_ = min(first[t] for t in ts), max(last[t] for t in ts)
            buffers.append(Buffer(graph.tensors[ts[0]].name, _align(sz, alignment), f, l_, tuple(ts)))
    return buffers


def _live_ranges(graph, order: list[int], const: set[int]) -> tuple[dict[int, int], dict[int, int]]:
    """(first, last): the positions in ``order`` where each activation is first and last used.

    The graph's inputs are live from position 0, its outputs until the last position.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in graph.inputs:
        first[t] = 0
        last[t] = 0
    for p, op_i in enumerate(order):
        op = graph.ops[op_i]
        for t in (*op.outputs, *op.inputs):
            if t not in const:
                first.setdefault(t, p)
                last[t] = max(last.get(t, p), p)
    for t in graph.outputs:
        if t in first:
            last[t] = len(order) - 1
    return first, last


def _find(parent: dict[int, int], t: int) -> int:
    """The representative of ``t``'s set in the union-find ``parent`` (halving the path on the way)."""
    while parent[t] != t:
        parent[t] = parent[parent[t]]
        t = parent[t]
    return t


def _alias_reshapes(graph, order: list[int], const: set[int], size: dict[int, int], last: dict[int, int],
                    parent: dict[int, int]) -> None:
    """Merge into ``parent`` each reshape's output with its input, where the reshape may run in place.

    It may when the input dies at the reshape, both have the same size and neither is a graph input or output.
    """
    pos = {op_i: p for p, op_i in enumerate(order)}
    protected = set(graph.inputs) | set(graph.outputs)
    for op_i in order:
        op = graph.ops[op_i]
        acts = [t for t in op.inputs if t not in const]
        outs = [t for t in op.outputs if t not in const]
        if op.kind != "reshape" or len(acts) != 1 or len(outs) != 1:
            continue
        src, out = acts[0], outs[0]
        if src in protected or out in protected or size[src] != size[out] or last[src] != pos[op_i]:
            continue
        parent[_find(parent, out)] = _find(parent, src)  # the output is the input, seen with another shape


# -- lower bound --------------------------------------------------------------------------
def live_bytes_per_op(buffers: list[Buffer]) -> list[int]:
    """Sum of the sizes of the buffers live at each operator position."""
    n = max((b.last for b in buffers), default=-1) + 1
    diff = [0] * (n + 1)
    for b in buffers:
        diff[b.first] += b.size
        diff[b.last + 1] -= b.size
    out, acc = [], 0
    for i in range(n):
        acc += diff[i]
        out.append(acc)
    return out


def lower_bound(buffers: list[Buffer]) -> int:
    """Max over operators of the live bytes: no placement of these buffers can use less."""
    return max(live_bytes_per_op(buffers), default=0)


# -- TFLM's greedy planner ------------------------------------------------------------------
def tflm_greedy(buffers: list[Buffer], fixed: list[int] | None = None) -> Plan:
    """TFLM's GreedyMemoryPlanner, buffers given in the order TFLM adds them.

    ``fixed``: an offline plan's offset per buffer, -1 where TFLM plans the buffer itself. TFLM takes the
    fixed buffers first, in the order added, at their offsets, then places the others around them.
    """
    n = len(buffers)
    if n == 0:
        return Plan([], [], "tflm-greedy")
    fixed = list(fixed) if fixed is not None else [-1] * n
    # TFLM puts the offline buffers at the head of its sort array in order and fills the rest from the
    # tail, then bubble-sorts that rest by size, descending (stable).
    online = [i for i in range(n) if fixed[i] < 0][::-1]
    online.sort(key=lambda i: -buffers[i].size)  # Python's sort is stable, like the bubble sort
    ids = [i for i in range(n) if fixed[i] >= 0] + online
    offsets = [max(o, 0) for o in fixed]
    placed: list[int] = [ids[0]]  # buffer ids sorted by offset (ties: insertion order)
    for i in ids[1:]:
        want = buffers[i]
        candidate = fixed[i] if fixed[i] >= 0 else 0
        for j in placed if fixed[i] < 0 else ():  # walk the offset-ordered list, looking at buffers live then
            other = buffers[j]
            if not want.overlaps(other):
                continue
            if offsets[j] - candidate >= want.size:
                break
            candidate = max(candidate, offsets[j] + other.size)
        offsets[i] = candidate
        # insert after every entry whose offset is <= candidate (TFLM's insertion rule)
        k = 0
        if offsets[placed[0]] > candidate:
            placed.insert(0, i)
            continue
        k = 1
        while k < len(placed) and offsets[placed[k]] <= candidate:
            k += 1
        placed.insert(k, i)
    return Plan(list(buffers), offsets, "tflm-greedy")


# -- our placement ------------------------------------------------------------------------
def _neighbours(buffers: list[Buffer]) -> list[list[int]]:
    """For each buffer, the buffers whose lifetimes overlap it (sweep over time)."""
    n = len(buffers)
    nb: list[list[int]] = [[] for _ in range(n)]
    by_first = sorted(range(n), key=lambda i: buffers[i].first)
    active: list[int] = []
    for i in by_first:
        b = buffers[i]
        active = [j for j in active if buffers[j].last >= b.first]
        for j in active:
            nb[i].append(j)
            nb[j].append(i)
        active.append(i)
    return nb


def place(buffers: list[Buffer], order: list[int], best_fit: bool = False, nb: list[list[int]] | None = None) -> list[int]:
    """Offsets placing buffers one by one in ``order``: first fit (lowest offset) or best fit (tightest gap)."""
    nb = _neighbours(buffers) if nb is None else nb
    offsets = [-1] * len(buffers)
    for i in order:
        size = buffers[i].size
        busy = sorted((offsets[j], offsets[j] + buffers[j].size) for j in nb[i] if offsets[j] >= 0)
        cand, best, best_gap = 0, None, None
        for start, end in busy:
            gap = start - cand
            if gap >= size:
                if not best_fit:
                    best = cand
                    break
                if best_gap is None or gap < best_gap:
                    best, best_gap = cand, gap
            cand = max(cand, end)
        offsets[i] = cand if best is None else best
    return offsets


def _arena(buffers, offsets) -> int:
    return max((o + b.size for o, b in zip(offsets, buffers)), default=0)


def _orderings(buffers: list[Buffer]) -> dict[str, list[int]]:
    n = len(buffers)
    idx = list(range(n))
    live = live_bytes_per_op(buffers)
    breadth = [max(live[b.first : b.last + 1]) for b in buffers]
    life = [b.last - b.first + 1 for b in buffers]
    return {
        "size": sorted(idx, key=lambda i: (-buffers[i].size, i)),
        "size*lifetime": sorted(idx, key=lambda i: (-buffers[i].size * life[i], i)),
        "lifetime": sorted(idx, key=lambda i: (-life[i], -buffers[i].size, i)),
        "first-use": sorted(idx, key=lambda i: (buffers[i].first, -buffers[i].size, i)),
        "breadth": sorted(idx, key=lambda i: (-breadth[i], -buffers[i].size, i)),
    }


def plan_offsets(buffers: list[Buffer], *, time_budget_s: float = 0.25, seed: int = 0) -> Plan:
    """Our planner: several orderings x {first, best} fit, then a local search; the best plan wins."""
    n = len(buffers)
    if n == 0:
        return Plan([], [], "empty")
    lb = lower_bound(buffers)
    nb = _neighbours(buffers)
    best_offsets: list[int] = []
    best_arena: int | None = None
    best_method = ""
    best_order: tuple[list[int], bool] = ([], False)
    for name, order in _orderings(buffers).items():
        for bf in (False, True):
            offs = place(buffers, order, bf, nb)
            a = _arena(buffers, offs)
            if best_arena is None or a < best_arena:
                best_offsets, best_arena, best_method, best_order = offs, a, f"{name}/{'best' if bf else 'first'}-fit", (order, bf)
    assert best_arena is not None  # _orderings gives at least one order
    # local search: move one buffer that ends at the arena's top earlier in the placement order
    rng = random.Random(seed)
    deadline = time.perf_counter() + time_budget_s
    order, bf = list(best_order[0]), best_order[1]
    tries = 0
    while best_arena > lb and time.perf_counter() < deadline and tries < 400:
        tries += 1
        top = [i for i in range(n) if best_offsets[i] + buffers[i].size == best_arena]
        i = rng.choice(top)
        k = order.index(i)
        if k == 0:
            j = rng.randrange(1, n) if n > 1 else 0
            cand = order[:]
            cand[0], cand[j] = cand[j], cand[0]
        else:
            new_k = rng.randrange(0, k)
            cand = order[:k] + order[k + 1 :]
            cand.insert(new_k, i)
        offs = place(buffers, cand, bf, nb)
        a = _arena(buffers, offs)
        if a <= best_arena:
            if a < best_arena:
                best_method = best_method.split(" +")[0] + " +local search"
            best_offsets, best_arena, order = offs, a, cand
    return Plan(list(buffers), best_offsets, best_method)


def check_plan(plan: Plan) -> None:
    """Raise AssertionError if two buffers live at the same time overlap in memory."""
    bs, offs = plan.buffers, plan.offsets
    for i in range(len(bs)):
        assert offs[i] >= 0, f"buffer {bs[i].name} has no offset"
        for j in range(i + 1, len(bs)):
            if bs[i].overlaps(bs[j]):
                a0, a1 = offs[i], offs[i] + bs[i].size
                b0, b1 = offs[j], offs[j] + bs[j].size
                assert a1 <= b0 or b1 <= a0, f"buffers {bs[i].name} and {bs[j].name} overlap"


# -- execution-order search -----------------------------------------------------------------
def search_orders(graph, *, beam: int = 64, alignment: int = ALIGNMENT) -> list[tuple[int, list[int]]]:
    """The best execution order found and the model's own, best first, as (peak live bytes, op indices).

    Beam search over topological orders: a state is the set of operators
    already run (a bit mask) with its ready operators; the tensors live after
    it depend only on that set, so states that ran the same operators in a
    different order are merged, keeping the lower peak. At each step every
    state runs each of its ready operators, and the ``beam`` states with the
    lowest (peak so far, live bytes) survive. Exact (a dynamic program over
    operator sets) while the number of distinct frontiers stays within the beam,
    as in graphs made of fire modules, SE blocks and residual branches.
    """
    n = len(graph.ops)

    def peak_of(order):
        return lower_bound(lifetimes(graph, order, alias_reshapes=False, alignment=alignment))

    base_order = list(range(n))
    results = {tuple(base_order): peak_of(base_order)}
    g = _OrderGraph.of(graph, alignment)
    if _branching(g.pred, n):
        for order in _beam_search(g, beam):
            results.setdefault(tuple(order), peak_of(list(order)))
    ranked = sorted(results.items(), key=lambda kv: (kv[1], kv[0] != tuple(base_order)))
    return [(peak, list(order)) for order, peak in ranked]


@dataclass
class _OrderGraph:
    """What the order search needs of a graph, per operator index: the operators it waits for (``pred``,
    a bit mask) and that wait for it (``succ``), the activations it reads (``op_in``) and writes (``op_out``);
    per activation, its aligned ``size`` and the operators that read it (``cons_mask``, a bit mask)."""

    size: dict[int, int]
    inputs: set[int]
    outputs: set[int]
    cons_mask: dict[int, int]
    pred: list[int]
    succ: list[set[int]]
    op_in: list[list[int]]
    op_out: list[list[int]]

    @classmethod
    def of(cls, graph, alignment: int) -> "_OrderGraph":
        ops = graph.ops
        const = {t for t, tt in graph.tensors.items() if tt.const}
        size = {t: _align(tt.nbytes, alignment) for t, tt in graph.tensors.items() if not tt.const}
        inputs = set(graph.inputs)
        producer = {t: op.index for op in ops for t in op.outputs}
        cons_mask: dict[int, int] = {}
        for op in ops:
            for t in set(op.inputs):
                if t not in const:
                    cons_mask[t] = cons_mask.get(t, 0) | (1 << op.index)
        pred = [0] * len(ops)
        succ: list[set[int]] = [set() for _ in ops]
        for op in ops:
            for t in op.inputs:
                p = producer.get(t)
                if p is not None and p != op.index:
                    pred[op.index] |= 1 << p
                    succ[p].add(op.index)
        op_in = [[t for t in dict.fromkeys(op.inputs) if t not in const] for op in ops]
        op_out = [[t for t in dict.fromkeys(op.outputs) if t not in const and t not in inputs] for op in ops]
        return cls(size, inputs, set(graph.outputs), cons_mask, pred, succ, op_in, op_out)


def _beam_search(g: _OrderGraph, beam: int) -> list[tuple[int, ...]]:
    """The complete orders left in the beam (see :func:`search_orders`), one per surviving state."""
    n = len(g.pred)
    live0 = sum(g.size[t] for t in g.inputs if t in g.size)
    ready0 = frozenset(o for o in range(n) if g.pred[o] == 0)
    states = {0: (0, live0, (), ready0)}  # mask of the operators run -> (peak, live bytes, order, ready)
    for _ in range(n):
        nxt: dict[int, tuple] = {}
        for mask, (peak, live, order, ready) in states.items():
            for o in ready:
                new_mask = mask | (1 << o)
                key = _step_key(g, o, new_mask, peak, live)
                old = nxt.get(new_mask)
                if old is None or key < old[:2]:
                    new_ready = (ready - {o}) | {s for s in g.succ[o] if not g.pred[s] & ~new_mask}
                    nxt[new_mask] = (*key, order + (o,), frozenset(new_ready))
        states = dict(sorted(nxt.items(), key=lambda kv: kv[1][:2])[:beam])
    return [order for _, _, order, _ in states.values()]


def _step_key(g: _OrderGraph, o: int, new_mask: int, peak: int, live: int) -> tuple[int, int]:
    """(peak, live bytes) after running operator ``o``, which makes the run set ``new_mask``.

    Its outputs come alive on top of what is live; then its inputs that no operator left to run reads, and its
    outputs that nothing reads, are freed (the graph's outputs stay).
    """
    outs = sum(g.size[t] for t in g.op_out[o])
    freed = sum(g.size[t] for t in g.op_in[o] if t not in g.outputs and not g.cons_mask.get(t, 0) & ~new_mask)
    freed += sum(g.size[t] for t in g.op_out[o] if t not in g.outputs and t not in g.cons_mask)
    return (max(peak, live + outs), live + outs - freed)


def _branching(pred: list[int], n: int) -> bool:
    """True when some operator does not depend on its predecessor in the given order (orders can differ)."""
    return any(not (pred[i] >> (i - 1) & 1) for i in range(1, n))


def example_branching_graph():
    """The smallest graph where the execution order matters, as in a fire module.

    ``x (8 KiB) -> a_big (64) -> a_small (4)`` and ``x -> b_big (64) -> b_small (4)``, then
    ``concat(a_small, b_small) (8)``. The model's order runs both big convolutions first, so
    x and both 64 KiB tensors are live together (136 KiB); running branch a to its end first
    needs only x + a_small + b_big (76 KiB). Used by the tests and the analysis benchmark.
    """
    from .graph import Graph, Op, Tensor

    tensors = {i: Tensor(i, f"t{i}", (1, kib * 1024), "int8", kib * 1024)
               for i, kib in enumerate([8, 64, 4, 64, 4, 8])}
    ops = [
        Op(0, "a_big", "CONV_2D", "conv", [0], [1]),
        Op(1, "b_big", "CONV_2D", "conv", [0], [3]),
        Op(2, "a_small", "CONV_2D", "conv", [1], [2]),
        Op(3, "b_small", "CONV_2D", "conv", [3], [4]),
        Op(4, "concat", "CONCATENATION", "concat", [2, 4], [5]),
    ]
    return Graph("two-branch example", "tflite", tensors, ops, [0], [5])
