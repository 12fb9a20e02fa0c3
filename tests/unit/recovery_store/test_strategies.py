"""cut_point: where a partial answer is cut back to before a continuation."""

from __future__ import annotations

import pytest

from recovery_store import STRATEGIES, cut_point


def kept(text, strategy):
    return text[: cut_point(text, strategy)]


def test_the_strategies_are_exact_paragraph_and_sentence():
    assert STRATEGIES == ("exact", "paragraph", "sentence")


@pytest.mark.parametrize("text", ["", "abc", "Ends. Mid sent", "emoji 😀👍🏽 done", "你好"])
def test_exact_keeps_everything(text):
    assert cut_point(text, "exact") == len(text)


def test_paragraph_keeps_up_to_and_including_the_last_blank_line():
    text = "First para.\n\nSecond para.\n\nThird, unfinished"
    assert kept(text, "paragraph") == "First para.\n\nSecond para.\n\n"


def test_paragraph_break_may_contain_whitespace_and_several_blank_lines():
    assert kept("One.\n  \t\n\n\nTwo", "paragraph") == "One.\n  \t\n\n\n"


@pytest.mark.parametrize("brk", ["\r\n\r\n", "\r\r", "\n\r\n", "\r\n \r\n"])
def test_paragraph_breaks_with_cr_and_crlf_line_ends(brk):
    assert kept(f"One{brk}Two", "paragraph") == f"One{brk}"


def test_a_single_crlf_is_not_a_paragraph_break():
    assert kept("Line one\r\nline two and more", "paragraph") == ""


def test_paragraph_falls_back_to_the_last_sentence_end():
    assert kept("One sentence. Another one! And a half", "paragraph") == "One sentence. Another one!"


def test_paragraph_with_no_boundary_at_all_keeps_nothing():
    assert cut_point("no boundary here at all", "paragraph") == 0


def test_text_ending_exactly_at_a_paragraph_break_is_kept_whole():
    text = "Done.\n\n"
    assert cut_point(text, "paragraph") == len(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello world. This is", "Hello world."),
        ("Really? Yes! No", "Really? Yes!"),
        ("Wait… what. Then", "Wait… what."),
        ("Hmm... and?! More", "Hmm... and?!"),
        ('He said "stop." Then', 'He said "stop."'),
        ("(Like this.) And", "(Like this.)"),
        ("She said “go!” and", "She said “go!”"),
        ("Line one.\nLine two", "Line one."),
    ],
)
def test_sentence_keeps_up_to_just_after_the_last_sentence_end(text, expected):
    assert kept(text, "sentence") == expected


def test_sentence_does_not_keep_the_whitespace_after_the_mark():
    assert kept("First.   Second", "sentence") == "First."


@pytest.mark.parametrize("text", ["Done.", "Done!", "Is it?", "Done.”", "Fin…"])
def test_a_sentence_end_at_the_very_end_counts(text):
    assert cut_point(text, "sentence") == len(text)


@pytest.mark.parametrize(
    "text",
    [
        "pi is 3.14 and e is 2.71",
        "see example.com now",
        "use e.g.this",
        "wait…what",
        "Hey!You there",
    ],
)
def test_a_mark_inside_a_token_is_not_a_sentence_end(text):
    assert cut_point(text, "sentence") == 0


def test_a_decimal_after_a_real_sentence_end_is_skipped():
    assert kept("It is big. It costs 3.14 euros and", "sentence") == "It is big."


@pytest.mark.parametrize("text", ["Fruits, e.g. apples", "That is, i.e. this", "In the U.S. today"])
def test_dotted_abbreviations_are_not_sentence_ends(text):
    assert cut_point(text, "sentence") == 0


def test_an_ordered_list_marker_is_not_a_sentence_end():
    assert kept("Steps:\n1. Mix it.\n2. Bake", "sentence") == "Steps:\n1. Mix it."


def test_a_number_ending_a_sentence_is_a_sentence_end():
    assert kept("The answer is 42. Next", "sentence") == "The answer is 42."


def test_cjk_marks_end_a_sentence_even_without_a_following_space():
    assert kept("你好。今天天气很好！我们去", "sentence") == "你好。今天天气很好！"
    assert kept("本当？はい。続き", "sentence") == "本当？はい。"
    assert kept("他说：「好。」然后", "sentence") == "他说：「好。」"


def test_positions_count_characters_not_bytes():
    text = "Émoji 😀👍🏽 ok. 日本語の文。rest"
    i = cut_point(text, "sentence")
    assert text[:i] == "Émoji 😀👍🏽 ok. 日本語の文。"
    assert i == len("Émoji 😀👍🏽 ok. 日本語の文。")
    assert i < len(text[:i].encode("utf-8"))


def test_sentence_with_no_boundary_keeps_nothing():
    assert cut_point("", "sentence") == 0
    assert cut_point("just words without an end", "sentence") == 0


def test_unknown_strategy_is_a_value_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match="'exact', 'paragraph', 'sentence'"):
        cut_point("x", "word")


def test_summarize_is_not_supported():
    with pytest.raises(ValueError, match="not supported"):
        cut_point("x", "summarize")


def test_text_that_is_not_a_str_is_a_type_error():
    with pytest.raises(TypeError, match="str"):
        cut_point(b"bytes.", "sentence")
