"""Key-mapping tables for checkpoint conversion: ordered rules that are data, plus the one engine that applies them.

A rule pairs two key *templates*, the source name and ours, e.g.::

    Rule("backbone.res{s+1}.{b}.conv{c}.norm.*", "backbone.body.layer{s}.{b}.bn{c}.*")

``{x}`` is a non-negative integer variable, optionally with one affine step (``{x+1}``, ``{x-2}``, ``{x*2}``) that
says how the number in *this* name relates to ``x``; ``*`` is any non-empty rest of the name, copied unchanged.
Because both sides are templates over the same variables, a table reads in both directions: forward converts a
released checkpoint to our names, reverse exports ours to the release's (the tests build release-layout state dicts
that way). The first rule whose source template matches a key decides; keys no rule matches are reported, never
guessed. ``Drop`` rules name tensors the model recomputes or never needs (buffers, loss weights) and say why;
``Refuse`` rules name weights of an architecture we do not have, so the report says what is wrong instead of just
"unmatched". A ``Split`` cuts one released tensor into several of ours (a fused q/k/v projection); read backwards
it concatenates them again, so tables with splits still export.
"""

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch

_PLACEHOLDER = re.compile(r"\{([a-z])(?:([-+*])(\d+))?\}|\*")


@dataclass(frozen=True)
class Transform:
    """A tensor rewrite that goes with a rename (e.g. a channel reorder); ``inverse`` undoes ``forward`` exactly."""

    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Rule:
    """Rename keys matching ``source`` to ``target``, rewriting the tensor with ``transform`` when given."""

    source: str
    target: str
    transform: Transform | None = None

    def __post_init__(self) -> None:
        if _Template.of(self.source).variables != _Template.of(self.target).variables:
            raise ValueError(f"Rule {self.source!r} -> {self.target!r}: both sides need the same variables and '*'")


@dataclass(frozen=True)
class Split:
    """One ``source`` tensor holding several of ours stacked along dim 0, ``targets`` in stacking order.

    ``proportions`` are their relative lengths along dim 0: MMSegmentation's ``in_proj_weight`` (3C, C) is our
    ``q`` (C rows) then ``kv`` (2C rows), proportions (1, 2). Biases split the same way.
    """

    source: str
    targets: tuple[str, ...]
    proportions: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.proportions) or len(self.targets) < 2 or min(self.proportions) < 1:
            raise ValueError(f"Split {self.source!r}: give two or more targets, each with a positive proportion")
        for target in self.targets:
            if _Template.of(self.source).variables != _Template.of(target).variables:
                raise ValueError(f"Split {self.source!r} -> {target!r}: both sides need the same variables and '*'")

    def cut(self, key: str, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The parts of ``tensor`` (named ``key``), in ``targets`` order; ValueError when it does not divide."""
        rows, unit = tensor.shape[0] if tensor.dim() else 0, sum(self.proportions)
        if rows == 0 or rows % unit:
            raise ValueError(
                f"{key}: shape {tuple(tensor.shape)} cannot be cut {':'.join(map(str, self.proportions))} along its "
                "first dimension; the file does not hold the architecture its keys name"
            )
        return torch.split(tensor, [rows // unit * p for p in self.proportions])


@dataclass(frozen=True)
class Drop:
    """Leave out keys matching ``source``: ``reason`` says why the model does not need them."""

    source: str
    reason: str


@dataclass(frozen=True)
class Refuse:
    """Keys matching ``source`` hold weights of a part our model does not have; ``reason`` tells the user."""

    source: str
    reason: str


Entry = Rule | Split | Drop | Refuse


@dataclass
class Mapped:
    """The outcome of applying a table: renamed tensors, and every key that did not simply map."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> keys
    refused: dict[str, list[str]] = field(default_factory=dict)  # reason -> keys
    unmatched: list[str] = field(default_factory=list)
    collisions: list[str] = field(default_factory=list)  # "a, b -> target": two keys renamed onto one name


class _Template:
    """A compiled key template: ``match`` a name to variable values, ``format`` values back into a name."""

    def __init__(self, text: str) -> None:
        self.text = text
        pattern, self.steps, seen = [], {}, []
        end = 0
        for m in _PLACEHOLDER.finditer(text):
            pattern.append(re.escape(text[end : m.start()]))
            name = m.group(1) or "*"
            if name in seen:
                raise ValueError(f"key template {text!r} uses {name!r} twice")
            seen.append(name)
            if name == "*":
                pattern.append("(?P<rest>.+?)")
            else:
                pattern.append(f"(?P<{name}>0|[1-9][0-9]*)")
                self.steps[name] = (m.group(2), int(m.group(3) or 0))
            end = m.end()
        pattern.append(re.escape(text[end:]))
        self.regex = re.compile("".join(pattern))
        self.variables = frozenset(seen)

    @staticmethod
    @functools.cache
    def of(text: str) -> "_Template":
        return _Template(text)

    def match(self, key: str) -> dict[str, int | str] | None:
        m = self.regex.fullmatch(key)
        if m is None:
            return None
        values: dict[str, int | str] = {"*": m.group("rest")} if "*" in self.variables else {}
        for name, (op, n) in self.steps.items():
            shown = int(m.group(name))
            if op == "*":
                if shown % n:
                    return None
                value = shown // n
            else:
                value = shown - n if op == "+" else shown + n if op == "-" else shown
            if value < 0:
                return None
            values[name] = value
        return values

    def format(self, values: Mapping[str, int | str]) -> str | None:
        """The name for ``values``, or None when a step would make a number negative (``{i-1}`` with i = 0)."""
        numbers = {}
        for name, (op, n) in self.steps.items():
            value = int(values[name])
            numbers[name] = value + n if op == "+" else value - n if op == "-" else value * n if op == "*" else value
        if any(v < 0 for v in numbers.values()):
            return None
        return _PLACEHOLDER.sub(
            lambda m: str(values["*"]) if m.group(0) == "*" else str(numbers[m.group(1)]), self.text
        )


def apply_table(state: Mapping[str, torch.Tensor], table: Iterable[Entry], reverse: bool = False) -> Mapped:
    """Rename every key of ``state`` by the first matching entry of ``table``.

    ``reverse`` reads the table backwards (our names -> the release's), using only its ``Rule`` and ``Split``
    entries, each transform's ``inverse``, and concatenating the parts of a split once all of them are there (parts
    whose siblings never come are reported unmatched); drops and refusals concern release files only.
    """
    entries = [e for e in table if isinstance(e, (Rule, Split))] if reverse else list(table)
    out = Mapped()
    origin: dict[str, str] = {}
    waiting: dict[tuple[str, Split], dict[int, tuple[str, torch.Tensor]]] = {}  # split parts read backwards

    def emit(new_key: str, tensor: torch.Tensor, source_key: str) -> None:
        if new_key in origin:
            out.collisions.append(f"{origin[new_key]}, {source_key} -> {new_key}")
        else:
            out.tensors[new_key] = tensor
            origin[new_key] = source_key

    for key, tensor in state.items():
        if reverse:
            _check_unambiguous(key, entries)
        for entry in entries:
            if reverse and isinstance(entry, Split):
                if not _gather_part(entry, key, tensor, waiting, emit):
                    continue
                break
            pattern = entry.target if reverse else entry.source
            values = _Template.of(pattern).match(key)
            if values is None:
                continue
            if isinstance(entry, Drop):
                out.dropped.setdefault(entry.reason, []).append(key)
            elif isinstance(entry, Refuse):
                out.refused.setdefault(entry.reason, []).append(key)
            elif isinstance(entry, Split):
                names = [_Template.of(t).format(values) for t in entry.targets]
                if None in names:
                    continue
                for name, part in zip(names, entry.cut(key, tensor)):
                    emit(name, part, key)
            else:
                new_key = _Template.of(entry.source if reverse else entry.target).format(values)
                if new_key is None:
                    continue  # e.g. {i-1} with i = 0: this rule does not cover the key
                if entry.transform is not None:
                    tensor = (entry.transform.inverse if reverse else entry.transform.forward)(tensor)
                emit(new_key, tensor, key)
            break
        else:
            out.unmatched.append(key)
    out.unmatched += [k for parts in waiting.values() for k, _ in parts.values()]
    return out


def _gather_part(
    split: Split,
    key: str,
    tensor: torch.Tensor,
    waiting: dict[tuple[str, Split], dict[int, tuple[str, torch.Tensor]]],
    emit: Callable[[str, torch.Tensor, str], None],
) -> bool:
    """Read backwards: file ``key`` as a part of ``split``; once every part is in, emit their concatenation.

    False when ``key`` is none of the split's targets.
    """
    for index, target in enumerate(split.targets):
        values = _Template.of(target).match(key)
        source = None if values is None else _Template.of(split.source).format(values)
        if source is not None:
            parts = waiting.setdefault((source, split), {})
            parts[index] = (key, tensor)
            if len(parts) == len(split.targets):
                del waiting[(source, split)]
                keys, tensors = zip(*(parts[i] for i in range(len(split.targets))))
                emit(source, torch.cat(tensors), ", ".join(keys))
            return True
    return False


def _targets(entry: Rule | Split) -> tuple[str, ...]:
    return entry.targets if isinstance(entry, Split) else (entry.target,)


def _check_unambiguous(key: str, entries: list[Rule | Split]) -> None:
    """Read backwards, a name two rules could produce means the table is wrong (forward, order resolves overlaps)."""
    hits = [e for e in entries if any(_Template.of(t).match(key) is not None for t in _targets(e))]
    if len(hits) > 1:
        raise ValueError(f"{key}: produced by several rules ({', '.join(r.source for r in hits)}); fix the table")
