"""Label and field selector parsing and matching, as list/watch and webhook selectors use them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaito_sim.apiserver.errors import ApiError
from kaito_sim.apiserver.selectors import FieldSelector, LabelSelector, label_selector_from_match

LABELS = {"app": "web", "tier": "front", "n": "5"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", True, id="empty-matches-all"),
        pytest.param("app=web", True, id="equals"),
        pytest.param("app==web", True, id="double-equals"),
        pytest.param("app=db", False, id="equals-miss"),
        pytest.param("app!=db", True, id="not-equals"),
        pytest.param("missing!=x", True, id="not-equals-absent-key"),
        pytest.param("app in (db, web)", True, id="in"),
        pytest.param("app in (db)", False, id="in-miss"),
        pytest.param("app notin (db,cache)", True, id="notin"),
        pytest.param("missing notin (x)", True, id="notin-absent-key"),
        pytest.param("app notin (web)", False, id="notin-miss"),
        pytest.param("tier", True, id="exists"),
        pytest.param("missing", False, id="exists-miss"),
        pytest.param("!missing", True, id="not-exists"),
        pytest.param("!app", False, id="not-exists-miss"),
        pytest.param("  app = web ,  tier in ( front , back )  ", True, id="whitespace"),
        pytest.param("app=web,tier=back", False, id="conjunction"),
        pytest.param("missing=", False, id="empty-value-needs-key"),
        pytest.param("n>3,n<6", True, id="gt-lt"),
        pytest.param("app>3", False, id="gt-non-numeric-label"),
        pytest.param("example.com/role!=x", True, id="prefixed-key"),
    ],
)
def test_label_selector_matches(text: str, expected: bool) -> None:
    assert LabelSelector.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("app in ()", "values set can't be empty", id="empty-set"),
        pytest.param("app=web,", "expected: identifier after ','", id="trailing-comma"),
        pytest.param("app in web", "expected: '('", id="in-without-parens"),
        pytest.param("=web", "found '=', expected: !, identifier", id="missing-key"),
        pytest.param("app web", "found 'web'", id="missing-operator"),
        pytest.param("app in (a b)", "expected: ',', ')'", id="set-missing-comma"),
        pytest.param("app=web tier", "found 'tier', expected: ','", id="missing-separator"),
        pytest.param("!", "identifier after '!'", id="bare-bang"),
        pytest.param("app=-web", 'Invalid value: "-web"', id="bad-value"),
        pytest.param("a/b/c=x", 'key: Invalid value: "a/b/c"', id="bad-key"),
        pytest.param("n>x", "must be an integer", id="gt-non-integer"),
    ],
)
def test_label_selector_syntax_errors(text: str, fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        LabelSelector.parse(text)
    assert caught.value.code == 400
    assert caught.value.message.startswith("unable to parse requirement: ")
    assert fragment in caught.value.message


def test_label_selector_renders_canonically() -> None:
    selector = LabelSelector.parse("tier in (b,a), app==web, !gone, x")
    assert str(selector) == "app=web,!gone,tier in (a,b),x"
    assert LabelSelector.parse("").empty


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param({}, {}, True, id="empty-matches-all"),
        pytest.param({"matchLabels": {"app": "web"}}, LABELS, True, id="match-labels"),
        pytest.param({"matchLabels": {"app": "db"}}, LABELS, False, id="match-labels-miss"),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]},
            LABELS,
            True,
            id="in",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
            LABELS,
            False,
            id="notin",
        ),
        pytest.param(
            {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "gone", "operator": "DoesNotExist"}]},
            LABELS,
            True,
            id="labels-and-expressions",
        ),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False, id="exists"),
    ],
)
def test_label_selector_from_match(selector: dict[str, object], labels: dict[str, str], expected: bool) -> None:
    assert label_selector_from_match(selector).matches(labels) is expected


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        pytest.param({"matchExpressions": [{"key": "a", "operator": "Equals"}]}, "not a valid", id="bad-operator"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "In"}]}, "can't be empty", id="in-no-values"),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "must be empty",
            id="exists-with-values",
        ),
    ],
)
def test_label_selector_from_match_rejects(selector: dict[str, object], fragment: str) -> None:
    with pytest.raises(ApiError, match=fragment):
        label_selector_from_match(selector)


_word = st.from_regex(r"[a-z][a-z0-9]{0,3}", fullmatch=True)
_labels = st.dictionaries(st.sampled_from(["a", "b", "k"]), st.sampled_from(["", "x", "y", "z1"]), max_size=3)


@given(key=st.sampled_from(["a", "k"]), value=_word, labels=_labels)
def test_set_forms_agree_with_equality_forms(key: str, value: str, labels: dict[str, str]) -> None:
    def match(text: str) -> bool:
        return LabelSelector.parse(text).matches(labels)

    assert match(f"{key} in ({value})") == match(f"{key}={value}") == match(f"{key}=={value}")
    assert match(f"{key} notin ({value})") == match(f"{key}!={value}") == (not match(f"{key}={value}"))
    assert match(f"!{key}") == (not match(key))


@given(
    terms=st.lists(
        st.tuples(st.sampled_from(["a", "b", "k"]), st.sampled_from(["=", "!=", " in ", " notin "]), _word),
        max_size=4,
    ),
    labels=_labels,
)
def test_rendering_round_trips(terms: list[tuple[str, str, str]], labels: dict[str, str]) -> None:
    text = ",".join(f"{k}{op}({v})" if "in" in op else f"{k}{op}{v}" for k, op, v in terms)
    selector = LabelSelector.parse(text)
    assert LabelSelector.parse(str(selector)).matches(labels) == selector.matches(labels)


POD = {"metadata": {"name": "p1", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
POD_FIELDS = {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", True, id="empty"),
        pytest.param("metadata.name=p1", True, id="equals"),
        pytest.param("metadata.name==p1", True, id="double-equals"),
        pytest.param("metadata.name!=p1", False, id="not-equals"),
        pytest.param("metadata.name=p1,status.phase!=Pending", True, id="conjunction"),
        pytest.param("spec.nodeName=n2", False, id="miss"),
        pytest.param("status.phase=", False, id="empty-value-vs-present"),
    ],
)
def test_field_selector_matches(text: str, expected: bool) -> None:
    assert FieldSelector.parse(text, allowed=POD_FIELDS).matches(POD) is expected


def test_field_selector_missing_value_compares_as_empty() -> None:
    selector = FieldSelector.parse("spec.nodeName=", allowed=POD_FIELDS)
    assert selector.matches({"metadata": {"name": "unscheduled"}})
    assert selector.fields == frozenset({"spec.nodeName"})


def test_field_selector_reports_fields_and_pinned_name() -> None:
    selector = FieldSelector.parse("metadata.name=p1,status.phase!=Failed", allowed=POD_FIELDS)
    assert selector.fields == frozenset({"metadata.name", "status.phase"})
    assert selector.equals("metadata.name") == "p1"
    assert selector.equals("status.phase") is None


def test_field_selector_escaped_comma() -> None:
    selector = FieldSelector.parse(r"metadata.name=a\,b", allowed=POD_FIELDS)
    assert selector.matches({"metadata": {"name": "a,b"}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("spec.replicas=1", "field label not supported: spec.replicas", id="unsupported-field"),
        pytest.param("metadata.name", "invalid selector: 'metadata.name'; can't understand", id="no-operator"),
    ],
)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        FieldSelector.parse(text, allowed={"metadata.name"})
    assert caught.value.code == 400
    assert caught.value.message.startswith(message)
