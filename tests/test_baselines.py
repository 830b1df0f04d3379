"""Chance / majority baselines and degenerate-answer detection (evaluator.analysis.baselines)."""

from __future__ import annotations

import math

import pytest

from evaluator.analysis.baselines import AnswerSpread, Baselines, answer_spread, at_chance, baselines


def test_seven_classes_chance():
    b = baselines(7, [])
    assert b.chance == pytest.approx(1 / 7)
    assert "chance 1/7 = 0.143" in b.how
    assert b.bar == pytest.approx(1 / 7)


def test_majority_and_how():
    targets = ["x"] * 21 + ["y"] * 15 + ["z"] * 64
    b = baselines(7, ["x"] * 21 + [f"c{i % 6}" for i in range(79)])
    assert b.majority_label == "x" and b.majority_rate == pytest.approx(0.21)
    assert b.how == "chance 1/7 = 0.143; majority class 'x' is 21% of 100 training items"
    b2 = baselines(3, targets)
    assert b2.majority_label == "z" and b2.majority_rate == pytest.approx(0.64)


def test_majority_ties_go_to_first_in_sorted_order():
    b = baselines(3, ["b", "c", "a", "c", "a", "b"])
    assert b.majority_label == "a" and b.majority_rate == pytest.approx(1 / 3)


def test_bar_is_max_of_chance_and_majority():
    assert baselines(2, ["a"] * 3 + ["b"]).bar == pytest.approx(0.75)  # majority above chance
    assert baselines(2, ["a", "b", "c", "d"]).bar == pytest.approx(0.5)  # chance above majority 0.25
    free = baselines(None, ["yes", "yes", "no"])
    assert free.chance is None and free.bar == pytest.approx(2 / 3)
    assert free.how.startswith("no chance level (free-form task)")


def test_empty_training_split_and_free_form():
    b = baselines(None, [])
    assert b == Baselines(None, None, None, 0.0, b.how)
    assert "no training targets" in b.how and "bar 0.0" in b.how
    b7 = baselines(7, ())
    assert b7.majority_label is None and b7.majority_rate is None and b7.bar == pytest.approx(1 / 7)


def test_bad_n_choices():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            baselines(bad, ["a"])


def test_at_chance_boundary():
    b = baselines(4, [])  # bar 0.25
    assert at_chance(0.25, b)  # equal: does not clear
    assert at_chance(0.10, b)
    assert not at_chance(0.2500001, b)
    assert at_chance(float("nan"), b) and at_chance(None, b)  # no interval cannot clear a bar
    assert not at_chance(0.01, baselines(None, []))  # bar 0.0
    assert at_chance(0.0, baselines(None, []))


def test_answer_spread_exactly_90_percent_is_constant():
    s = answer_spread(["a"] * 90 + ["b"] * 10)
    assert s.constant and s.top_answer == "a" and s.top_share == pytest.approx(0.9)
    assert s.statement == "answers 'a' for 90 of 100 items (90%): a 90, b 10"
    s27 = answer_spread(["a"] * 27 + ["b"] * 3)  # 27/30: 0.9 exactly only in exact arithmetic
    assert s27.constant


def test_answer_spread_89_percent_is_not_constant():
    s = answer_spread(["a"] * 89 + ["b"] * 11)
    assert not s.constant and s.statement is None
    assert s.top_share == pytest.approx(0.89)


def test_answer_spread_counts_order_and_statement():
    preds = ["book_restaurant"] * 57 + ["play_music"] * 3
    s = answer_spread(preds)
    assert list(s.counts.items()) == [("book_restaurant", 57), ("play_music", 3)]
    assert s.statement == "answers 'book_restaurant' for 57 of 60 items (95%): book_restaurant 57, play_music 3"
    tied = answer_spread(["b", "a", "c", "a", "b"])
    assert list(tied.counts) == ["a", "b", "c"] and tied.top_answer == "a"


def test_answer_spread_lists_at_most_five():
    preds = ["a"] * 95 + ["b", "c", "d", "e", "f"]
    s = answer_spread(preds)
    assert s.constant and s.statement.endswith("a 95, b 1, c 1, d 1, e 1, 1 other answers 1")


def test_answer_spread_empty_and_bad_threshold():
    s = answer_spread([])
    assert s == AnswerSpread("", 0.0, {}, False, None)
    assert answer_spread(["a"]).constant
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError):
            answer_spread(["a"], threshold=bad)
    assert not math.isnan(answer_spread(["x", "y"], threshold=1.0).top_share)
