import pytest

from keyart.context import MemberContext, Play
from keyart.errors import ValidationError


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MemberContext("m", interacted_titles="t0"), "interacted_titles.*single string"),
        (lambda: MemberContext("m", interacted_titles=["t0", 3]), "interacted_titles"),
        (lambda: MemberContext("m", interacted_titles=[""]), "interacted_titles"),
        (lambda: MemberContext("m", interacted_titles=5), "interacted_titles"),
        (lambda: MemberContext("m", played="t0"), "played.*single string"),
        (lambda: MemberContext("m", played={"title_id": "t0"}), "played"),
        (lambda: MemberContext("m", played=[3]), r"played\[0\]"),
        (lambda: MemberContext("m", played=["t0", {"title": "t1"}]), r"played\[1\]"),
        (lambda: MemberContext("m", played=5), "played"),
        (lambda: MemberContext("m", recommender_scores="t0"), "recommender_scores.*mapping"),
        (lambda: MemberContext("m", extra=[("a", 1.0)]), "extra.*mapping"),
        (lambda: MemberContext("m", extra={"a": True}), r"extra\['a'\]"),
        (lambda: MemberContext("m", timestamp=True), "timestamp"),
        (lambda: MemberContext("m", device=None), "device"),
        (lambda: Play("t", timestamp=True), "Play.timestamp"),
        (lambda: Play("t", engaged_seconds=False), "Play.engaged_seconds"),
        (lambda: Play("t", timestamp="1"), "Play.timestamp"),
        (lambda: Play(""), "Play.title_id"),
    ],
)
def test_bad_context_is_a_validation_error_naming_the_argument(make, match):
    with pytest.raises(ValidationError, match=match):
        make()


def test_good_collections_are_accepted_and_normalized():
    ctx = MemberContext(
        "m",
        played=(p for p in ["t1", Play("t2", 5), {"title_id": "t3", "timestamp": 7}]),
        interacted_titles=["t1", "t1", "t2"],
        recommender_scores={"t1": 1},
    )
    assert ctx.played_title_ids() == ("t1", "t2", "t3")
    assert ctx.interacted_titles == frozenset({"t1", "t2"})
    assert ctx.recommender_scores == {"t1": 1.0}
