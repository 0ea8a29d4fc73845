"""The key-template engine that every conversion table runs on."""

import re

import pytest
import torch

from freemask.checkpoint.convert import LAYOUTS, Drop, Refuse, Rule, Transform, apply_table

NEGATE = Transform("negate", torch.neg, torch.neg)
TABLE = (
    Drop("a.layers.{i}.index", "recomputed"),
    Refuse("a.stem.*", "no stem here"),
    Rule("a.res{s+1}.{b}.conv{c}.*", "b.layer{s}.{b}.conv{c}.*"),
    Rule("a.layers.{i}.down.*", "b.layers_{i+1}.down.*", NEGATE),
    Rule("a.mlp.{k*2}.weight", "b.mlp.layers.{k}.weight"),
)


def test_forward_renames_by_template_arithmetic_and_applies_transforms():
    state = {
        "a.res2.0.conv3.norm.bias": torch.tensor([1.0]),
        "a.layers.0.down.weight": torch.tensor([2.0]),
        "a.mlp.4.weight": torch.tensor([3.0]),
        "a.layers.1.index": torch.tensor([4]),
        "a.stem.0.weight": torch.tensor([5.0]),
        "a.mlp.3.weight": torch.tensor([6.0]),  # odd: the ReLU slot of a Sequential, no rule covers it
        "a.res0.0.conv1.weight": torch.tensor([7.0]),  # res{s+1} with s = -1: not covered
    }
    mapped = apply_table(state, TABLE)
    assert mapped.tensors == {
        "b.layer1.0.conv3.norm.bias": state["a.res2.0.conv3.norm.bias"],
        "b.layers_1.down.weight": mapped.tensors["b.layers_1.down.weight"],
        "b.mlp.layers.2.weight": state["a.mlp.4.weight"],
    }
    assert mapped.tensors["b.layers_1.down.weight"].item() == -2.0
    assert mapped.dropped == {"recomputed": ["a.layers.1.index"]}
    assert mapped.refused == {"no stem here": ["a.stem.0.weight"]}
    assert mapped.unmatched == ["a.mlp.3.weight", "a.res0.0.conv1.weight"]


def test_reverse_is_the_inverse_of_forward():
    ours = {"b.layer1.0.conv3.weight": torch.randn(2), "b.layers_1.down.bias": torch.randn(3)}
    source = apply_table(ours, TABLE, reverse=True).tensors
    assert set(source) == {"a.res2.0.conv3.weight", "a.layers.0.down.bias"}
    back = apply_table(source, TABLE).tensors
    assert back.keys() == ours.keys() and all(torch.equal(back[k], ours[k]) for k in ours)
    assert apply_table({"b.layers_0.down.bias": torch.zeros(1)}, TABLE, reverse=True).unmatched == [
        "b.layers_0.down.bias"  # would need i = -1
    ]


def test_two_keys_onto_one_name_is_reported():
    table = (Rule("x.{i}.w", "y.w{i}"), Rule("z.{i}.w", "y.w{i}"))
    mapped = apply_table({"x.1.w": torch.zeros(1), "z.1.w": torch.ones(1)}, table)
    assert mapped.collisions == ["x.1.w, z.1.w -> y.w1"]


def test_malformed_rules_are_rejected_when_the_table_is_written():
    with pytest.raises(ValueError, match="same variables"):
        Rule("a.{i}.*", "b.{j}.*")
    with pytest.raises(ValueError, match="twice"):
        Rule("a.{i}.{i}", "b.{i}")


def _concrete(template: str) -> str:
    """A name the template matches: every variable 3, the wildcard a leaf name."""

    def fill(m: re.Match) -> str:
        op, n = m.group(2), int(m.group(3) or 0)
        return str(3 + n if op == "+" else 3 - n if op == "-" else 3 * n if op == "*" else 3)

    return re.sub(r"\{([a-z])(?:([-+*])(\d+))?\}", fill, template).replace("*", "weight")


def test_every_released_rule_is_the_only_one_producing_its_names():
    """Reading a table backwards (how the tests build release files) needs each of our names to have one origin."""
    for layout in LAYOUTS:
        for rule in (e for e in layout.table if isinstance(e, Rule)):
            mapped = apply_table({_concrete(rule.target): torch.zeros(8)}, layout.table, reverse=True)
            assert list(mapped.tensors) == [_concrete(rule.source)], (layout.name, rule)


def test_an_ambiguous_table_is_an_error_when_read_backwards():
    table = (Rule("x.conv.*", "y.*"), Rule("x.gn.*", "y.norm.*"))
    with pytest.raises(ValueError, match="several rules"):
        apply_table({"y.norm.weight": torch.zeros(1)}, table, reverse=True)
