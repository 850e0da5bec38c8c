"""The expression language: a known answer for every construct, the bounds, and a fuzzer that never crashes it."""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pilotnet.policy import expr
from pilotnet.policy.expr import ExpressionError, compile_expression

NOW = 1_000_000.0


def value(source, **variables):
    return compile_expression(source).evaluate(variables, NOW)


class KnownAnswerTests(SynchronousTestCase):
    def check(self, cases):
        for source, variables, expected in cases:
            with self.subTest(source=source):
                result = value(source, **variables)
                self.assertEqual(result, expected)
                self.assertIs(type(result), type(expected))

    def test_literals(self):
        self.check([
            ("42", {}, 42), ("0x2A", {}, 42), ("1_000", {}, 1000), ("0.5", {}, 0.5), (".5", {}, 0.5),
            ("1e3", {}, 1000.0), ('"a\\tb"', {}, "a\tb"), ("'it\\'s'", {}, "it's"), ("`raw\\n`", {}, "raw\\n"),
            ('"\\u00e9\\x41"', {}, "éA"), ("true", {}, True), ("false", {}, False), ("nil", {}, None),
            ("[1, 'a', [true]]", {}, [1, "a", [True]]), ("[]", {}, []), ("// note\n 1 /* two */", {}, 1),
        ])

    def test_variables_members_and_indexes(self):
        event = {"peer": {"tags": ["gpu", "eu"], "id": 7}}
        self.check([
            ("port", {"port": 7}, 7), ("missing", {}, None), ("peer.id", event, 7), ("peer['id']", event, 7),
            ("peer.tags[1]", event, "eu"), ("peer.tags[-1]", event, "eu"), ("peer.nothing", event, None),
            ("missing.deeper.still", {}, None), ('"abc"[1]', {}, "b"),
        ])

    def test_arithmetic(self):
        self.check([
            ("1 + 2 * 3", {}, 7), ("(1 + 2) * 3", {}, 9), ("7 / 2", {}, 3.5), ("6 / 3", {}, 2.0),
            ("7 % 3", {}, 1), ("-7 % 3", {}, -1), ("7 % -3", {}, 1), ("2 ** 10", {}, 1024.0),
            ("2 ^ 3 ^ 2", {}, 512.0), ("-2 ** 2", {}, -4.0), ("- -3", {}, 3), ("+4", {}, 4), ("1 - 2 - 3", {}, -4),
            ("1.5 + 1", {}, 2.5), ('"a" + "b"', {}, "ab"), ("[1] + [2]", {}, [1, 2]), ("1 / 0", {}, float("inf")),
        ])

    def test_comparison_and_equality(self):
        self.check([
            ("1 < 2", {}, True), ("2 <= 2", {}, True), ("3 > 4", {}, False), ("3 >= 4", {}, False),
            ('"a" < "b"', {}, True), ("1 == 1.0", {}, True), ('1 == "1"', {}, False), ("nil == nil", {}, True),
            ("x == nil", {}, True), ("[1, 2] == [1, 2]", {}, True), ("1 != 2", {}, True), ("true == 1", {}, False),
        ])

    def test_logic_both_spellings_and_short_circuit(self):
        self.check([
            ("true and false", {}, False), ("true && true", {}, True), ("false or true", {}, True),
            ("false || false", {}, False), ("not true", {}, False), ("!false", {}, True),
            ("false && (1 / 0 > 0 && missing.x)", {}, False), ("true || nonsense > 1", {}, True),
            ("not true == false", {}, True), ("1 < 2 and 2 < 3 or false", {}, True),
        ])

    def test_membership_and_string_operators(self):
        self.check([
            ('"gpu" in ["cpu", "gpu"]', {}, True), ("3 in [1, 2]", {}, False), ('"k" in {"k": 1}'.replace(
                '{"k": 1}', "m"), {"m": {"k": 1}}, True), ('"x" not in ["x"]', {}, False), ("1 in nil", {}, False),
            ('"foobar" contains "oba"', {}, True), ('"foobar" startsWith "foo"', {}, True),
            ('"foobar" endsWith "bar"', {}, True), ('"foobar" not endsWith "bar"', {}, False),
            ('"agent-7" matches "^agent-[0-9]+$"', {}, True), ('not ("foo" matches "^b.+")', {}, True),
            ('"Foo" not matches "(?i)^f"', {}, False),
        ])

    def test_conditional_and_coalescing(self):
        self.check([
            ("1 < 2 ? 'yes' : 'no'", {}, "yes"), ("false ? 1 : true ? 2 : 3", {}, 2), ("missing ?? 5", {}, 5),
            ("port ?? 5", {"port": 0}, 0),
        ])

    def test_functions(self):
        self.check([
            ('has_tag(peer_tags, "service")', {"peer_tags": ["service"]}, True),
            ('has_tag(peer_tags, "service")', {}, False), ('duration("1m30s")', {}, 90.0),
            ("since(last_seen)", {"last_seen": NOW - 30}, 30.0), ("since(0)", {}, 0.0), ("len('abc')", {}, 3),
            ("len([1, 2])", {}, 2), ("abs(-3)", {}, 3), ("int('12')", {}, 12), ("int(2.9)", {}, 2),
            ("float(2)", {}, 2.0), ("string(12)", {}, "12"), ("lower('AbC')", {}, "abc"),
            ("upper('a')", {}, "A"), ("trim('  a ')", {}, "a"), ("hasPrefix('abc', 'ab')", {}, True),
            ("hasSuffix('abc', 'bc')", {}, True), ("max(1, 5, 3)", {}, 5), ("min([4, 2])", {}, 2),
        ])

    def test_test_requires_a_bool(self):
        self.assertTrue(compile_expression("port == 7").test({"port": 7}, NOW))
        with self.assertRaises(ExpressionError) as caught:
            compile_expression("port + 1").test({"port": 7}, NOW)
        self.assertIn("want bool", caught.exception.message)


class RefusalTests(SynchronousTestCase):
    def refused(self, source, fragment, **variables):
        with self.assertRaises(ExpressionError) as caught:
            compile_expression(source).evaluate(variables, NOW)
        self.assertIn(fragment, caught.exception.message)
        self.assertEqual(caught.exception.code, "invalid_argument")

    def test_syntax_errors_name_the_place(self):
        self.refused("1 +", "unexpected end of expression")
        self.refused("(1", "expected ')'")
        self.refused("1 2", "unexpected 2 (at character 3)")
        self.refused('"open', "unterminated string")
        self.refused("a # b", "unexpected character '#'")
        self.refused("/* never closed", "unterminated comment")
        self.refused('"\\q"', "invalid escape")
        self.refused("", "empty expression")

    def test_unsupported_constructs_are_named(self):
        self.refused("eval('1')", "unknown function eval()")
        self.refused("peer.name()", "method calls")
        self.refused("a[1:2]", "slices are not supported")
        self.refused("len(1, 2)", "takes 1 argument")
        self.refused("__import__('os')", "unknown function")

    def test_type_errors(self):
        self.refused("1 + 'a'", "+ needs numbers")
        self.refused("1 and true", "and needs bools")
        self.refused("not 1", "not needs a bool")
        self.refused("1 < 'a'", "needs two numbers or two strings")
        self.refused("1 % 0", "divide by zero")
        self.refused("0 / 0", "not a number")
        self.refused("'a' in 'abc'", "in needs an array or a map")
        self.refused("x.y", "cannot read", x=5)
        self.refused("[1][5]", "out of range")
        self.refused("'a' matches '('", "invalid regular expression")
        self.refused("1 ? 2 : 3", "needs a bool condition")

    def test_bounds(self):
        self.refused("1" + " + 1" * 1100, f"longer than {expr.MAX_LENGTH}")
        self.refused("(" * 60 + "1" + ")" * 60, "nested deeper")
        self.refused("-" * 60 + "1", "nested deeper")
        self.refused("1" + "+1" * 200, "nested deeper than 128 operations")
        self.refused("true" + " && true" * 200, "nested deeper than 128 operations")
        self.assertEqual(value("1" + "+1" * 120), 121)
        self.refused("9223372036854775807 + 1", "integer overflow")
        self.refused("99999999999999999999", "does not fit 64 bits")
        self.refused("10 ** 400", "out of range")
        self.refused("s + s", "string longer", s="x" * 40_000)
        self.refused("has_tag(tags, 'x')", "more than", tags=["y"] * (expr.MAX_STEPS + 1))

    def test_catastrophic_patterns_run_in_linear_time(self):
        # (a+)+$ takes Python's re exponential time on this input; RE2 answers at once.
        self.assertFalse(value('s matches "^(a+)+$"', s="a" * 5000 + "!"))


_ATOMS = ["1", "0x1F", "2.5", "'s'", '"t"', "true", "false", "nil", "port", "peer_tags", "x.y", "[1, 2]",
          "has_tag(peer_tags, 'a')", "len('ab')", "duration('1m')"]
_OPERATORS = [" + ", " - ", " * ", " / ", " % ", " ** ", " == ", " != ", " < ", " >= ", " and ", " || ",
              " in ", " not in ", " matches ", " contains ", " startsWith ", " ?? "]


@st.composite
def expressions(draw, depth=0):
    if depth > 4 or draw(st.booleans()):
        return draw(st.sampled_from(_ATOMS))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(["not ", "!", "-"])) + draw(expressions(depth + 1))
    if kind == 1:
        return "(" + draw(expressions(depth + 1)) + ")"
    if kind == 2:
        return (draw(expressions(depth + 1)) + " ? " + draw(expressions(depth + 1)) + " : "
                + draw(expressions(depth + 1)))
    return draw(expressions(depth + 1)) + draw(st.sampled_from(_OPERATORS)) + draw(expressions(depth + 1))


class FuzzTests(SynchronousTestCase):
    """Whatever the text, compiling and evaluating end in a value or an ExpressionError."""

    def survive(self, source, variables):
        try:
            compiled = compile_expression(source)
        except ExpressionError:
            return
        try:
            compiled.evaluate(variables, NOW)
        except ExpressionError:
            pass

    @settings(max_examples=600, deadline=None)
    @given(st.text(max_size=200))
    def test_any_text(self, source):
        self.survive(source, {})

    @settings(max_examples=600, deadline=None)
    @given(st.text(alphabet="()[]!?:.,'\"`+-*/%^<>=&|0123456789xaeinotrs _\\\n", max_size=120))
    def test_operator_soup(self, source):
        self.survive(source, {"x": {"y": 1}, "port": 7})

    @settings(max_examples=500, deadline=None)
    @given(expressions(), st.dictionaries(st.sampled_from(["port", "peer_tags", "x"]),
                                          st.one_of(st.integers(-2**70, 2**70), st.text(max_size=20),
                                                    st.lists(st.text(max_size=5), max_size=5),
                                                    st.floats(allow_nan=True), st.none(), st.booleans())))
    def test_well_formed_expressions_over_hostile_values(self, source, variables):
        self.survive(source, variables)

    @settings(max_examples=50, deadline=None)
    @given(st.integers(1, 400), st.sampled_from(["(", "[", "-", "!", "not "]))
    def test_deep_nesting_is_refused_not_a_crash(self, depth, opener):
        closer = {"(": ")", "[": "]"}.get(opener, "")
        self.survive(opener * depth + "1" + closer * depth, {})
