// The Jinja engine feature by feature: each case's expected output was rendered by Python Jinja2
// configured as transformers configures it (tests/reference/render_template.py), so these pin
// the engine to the reference without needing Python at test time. Then syntax errors (name,
// line, column), raise_exception's message, sandbox and runtime errors, and generation spans.
#include <gtest/gtest.h>

#include "tune/template/chat_template.h"

namespace {

using nlohmann::json;
using tune::tmpl::ChatTemplate;

struct Case {
  const char* name;
  const char* source;
  const char* context;  // JSON
  const char* expected;
};

const Case kCases[] = {
    {"ws_trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", "{}", "yes\nend"},
    {"ws_lstrip", "a\n    {% if true %}\n    b\n    {% endif %}\nc", "{}", "a\n    b\nc"},
    {"ws_minus", "a   {%- if true -%}   b   {%- endif -%}   c", "{}", "abc"},
    {"ws_var_minus", "x  {{- 1 -}}  y {{ 2 }}\nz", "{}", "x1y 2\nz"},
    {"ws_plus", "a\n  {%+ if true %}b{% endif %}", "{}", "a\n  b"},
    {"ws_comment", "a\n  {# note #}\nb{#- x -#}  c", "{}", "a\nbc"},
    {"ws_raw", "{% raw %}{{ not }}{% endraw %}|{%- raw -%}  {% x %}  {%- endraw -%}  |", "{}",
     "{{ not }}|{% x %}|"},
    {"ws_trailing_newline", "hi\n", "{}", "hi"},
    {"ws_crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", "{}", "a\nb\n"},
    {"print_values",
     "{{ [1, 'a', none, true, 1.5, {'k': (1,)}] }}|{{ none }}|{{ True }}|{{ 2.0 }}|{{ 1e20 }}|{{ "
     "0.0001 }}|{{ 1e-5 }}",
     "{}", "[1, 'a', None, True, 1.5, {'k': (1,)}]|None|True|2.0|1e+20|0.0001|1e-05"},
    {"print_repr_quotes", "{{ [\"it's\", 'say \"hi\"', 'a\\nb', 'tab\\t'] }}", "{}",
     "[\"it's\", 'say \"hi\"', 'a\\nb', 'tab\\t']"},
    {"string_escapes", "{{ 'a\\tb\\\\c\\'d' }}|{{ \"\\u00e9\\x41\" }}|{{ 'ab' 'cd' }}", "{}",
     "a\tb\\c'd|\xc3"
     "\xa9"
     "A|abcd"},
    {"tuple_print", "{{ (1, 2) }}{{ () }}{{ (3,) }}", "{}", "(1, 2)()(3,)"},
    {"dict_order", "{{ {'b': 1, 'a': 2} }}{% for k in {'z': 1, 'y': 2} %}{{ k }}{% endfor %}", "{}",
     "{'b': 1, 'a': 2}zy"},
    {"arith",
     "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} "
     "{{ 7.5 % 2 }} {{ -7.5 // 2 }} {{ 1 + 2.5 }} {{ 0.1 + 0.2 }}",
     "{}", "3 -4 2 -2 3.5 1024 0.5 1.5 -4.0 3.5 0.30000000000000004"},
    {"concat",
     "{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1] + [2, 3] }}|{{ [0] * 2 }}|{{ 'x' + 'y' }}",
     "{}", "a1NoneTrue|ababab|[1, 2, 3]|[0, 0]|xy"},
    {"unary", "{{ -3 }} {{ - 2.5 }} {{ not true }} {{ not 0 }} {{ -x|abs }}", "{\"x\": 4}",
     "-3 -2.5 False True 4"},
    {"compare",
     "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1,2] == [1,2] }} {{ true "
     "== 1 }} {{ 'a' != 'a' }} {{ 2 >= 2 }}",
     "{}", "True False True True True True False True"},
    {"in_ops",
     "{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k':1} }} {{ 'z' not in 'abc' }} {{ 3 not in "
     "[3] }}",
     "{}", "True True True True False"},
    {"logic", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ none or [] }} {{ '' and 1 }}", "{}", "x y [] "},
    {"condexpr",
     "{{ 'a' if x else 'b' }}{{ 'c' if not x }}|{{ 1 if y > 2 else 2 if y > 1 else 3 }}",
     "{\"x\": false, \"y\": 2}", "bc|2"},
    {"access",
     "{{ d.a }} {{ d['a'] }} {{ d.b.c }} {{ l[0] }} {{ l[-1] }} {{ l.1 }} {{ d.missing }}|{{ "
     "d['missing'] is defined }}",
     "{\"d\": {\"a\": 1, \"b\": {\"c\": 2}}, \"l\": [10, 20, 30]}", "1 1 2 10 30 20 |False"},
    {"slicing",
     "{{ s[::-1] }} {{ s[1:] }} {{ s[:2] }} {{ l[::-1] }} {{ l[1:] }} {{ l[:n] }} {{ l[-2:] }} {{ "
     "l[::2] }} {{ u[1:3] }} {{ u[::-1] }}",
     "{\"s\": \"hello\", \"l\": [1, 2, 3, 4], \"n\": 2, \"u\": \"h\xc3"
     "\xa9"
     "llo\"}",
     "olleh ello he [4, 3, 2, 1] [2, 3, 4] [1, 2] [3, 4] [1, 3] \xc3"
     "\xa9"
     "l oll\xc3"
     "\xa9"
     "h"},
    {"undefined",
     "[{{ nope }}]{{ nope is defined }}{{ nope is undefined }}{% if nope %}t{% else %}f{% endif "
     "%}{{ nope | default('dflt') }}{{ nope|length }}{% for x in nope %}x{% endfor %}",
     "{}", "[]FalseTruefdflt0"},
    {"none_attr", "{{ n.foo is defined }}{{ n['x'] is defined }}", "{\"n\": null}", "FalseFalse"},
    {"set_scoping",
     "{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = i * 10 %}{{ x }}{% endfor %}{{ x }}",
     "{}", "1101201"},
    {"set_block",
     "{% set body %}  hi {{ 1 + 1 }}\n{% endset %}[{{ body }}]{% set up | upper %}abc{% endset "
     "%}{{ up }}",
     "{}", "[  hi 2\n]ABC"},
    {"set_tuple", "{% set a, b = [1, 2] %}{{ a }}{{ b }}", "{}", "12"},
    {"if_elif",
     "{% for v in [1,2,3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %} {% "
     "endfor %}",
     "{}", "one two many "},
    {"for_loop_vars",
     "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 "
     "}}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.cycle('o','e') }};{% endfor %}",
     "{}", "1032TrueFalse3o;2121FalseFalse3e;3210FalseTrue3o;"},
    {"for_prev_next",
     "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }}|{{ loop.previtem is defined "
     "}};{% endfor %}",
     "{}", "-2|False;1-3|True;2-|True;"},
    {"for_else_filter",
     "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in range(10) if x is odd %}{{ x }}{{ "
     "loop.length }},{% endfor %}",
     "{}", "empty|15,35,55,75,95,"},
    {"for_unpack",
     "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d|dictsort %}{{ k }}{{ "
     "v }}{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}",
     "{\"d\": {\"b\": 2, \"a\": 1}}", "b=2;a=1;a1b237"},
    {"loop_controls",
     "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% "
     "endif %}{{ x }}{% endfor %}",
     "{}", "0134"},
    {"nested_loops",
     "{% for a in [1,2] %}{% for b in [3,4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ "
     "loop.index }}|{% endfor %}",
     "{}", "113 214 1|123 224 2|"},
    {"macro",
     "{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% "
     "endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet('Cy', punct='?') }} {{ "
     "greet(name='Di', greeting='Yo') }}",
     "{}", "Hello, Ann! Hi, Bob! Hello, Cy? Yo, Di!"},
    {"macro_kwargs_varargs",
     "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, x=4) }}", "{}",
     "1(2, 3){'x': 4}"},
    {"macro_scope",
     "{% set g = 'G' %}{% macro m() %}{% set g = 'L' %}{{ g }}{% endmacro %}{{ m() }}{{ g }}", "{}",
     "LG"},
    {"call_block",
     "{% macro box(title) %}[{{ title }}:{{ caller() }}]{% endmacro %}{% call box('t') %}inside {{ "
     "1 }}{% endcall %}",
     "{}", "[t:inside 1]"},
    {"filter_block",
     "{% filter upper %}hello {{ 'world' }}{% endfilter %}|{% filter trim | upper %}  x  {% "
     "endfilter %}",
     "{}", "HELLO WORLD|X"},
    {"namespace",
     "{% set ns = namespace(a=1, found=false) %}{% for i in [1,2,3] %}{% set ns.a = ns.a + i %}{% "
     "if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.a }}{{ ns.found }}",
     "{}", "7True"},
    {"generation_basic",
     "A{% generation %}B{{ '\xc3"
     "\xa9"
     "' }}{% endgeneration %}C{% generation %}D{% endgeneration %}",
     "{}",
     "AB\xc3"
     "\xa9"
     "CD"},
    {"f_trim_tojson",
     "[{{ '  x \\n' | trim }}][{{ 'xxaxx' | trim('x') }}]{{ d | tojson }}|{{ d | tojson(indent=2) "
     "}}|{{ d | tojson(sort_keys=true) }}|{{ '\xc3"
     "\xa9"
     "\\n\"' | tojson }}|{{ [] | tojson(indent=2) }}|{{ d | tojson(separators=(',', ':')) }}",
     "{\"d\": {\"b\": [1, 2.5, null, true], \"a\": \"\xc3"
     "\xbc"
     "\", \"e\": {}}}",
     "[x][a]{\"b\": [1, 2.5, null, true], \"a\": \"\xc3"
     "\xbc"
     "\", \"e\": {}}|{\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"a\": \"\xc3"
     "\xbc"
     "\",\n  \"e\": {}\n}|{\"a\": \"\xc3"
     "\xbc"
     "\", \"b\": [1, 2.5, null, true], \"e\": {}}|\"\xc3"
     "\xa9"
     "\\n\\\"\"|[]|{\"b\":[1,2.5,null,true],\"a\":\"\xc3"
     "\xbc"
     "\",\"e\":{}}"},
    {"f_length",
     "{{ 'h\xc3"
     "\xa9"
     "llo'|length }} {{ [1,2]|count }} {{ {'a':1}|length }}",
     "{}", "5 2 1"},
    {"f_join_map",
     "{{ [1,2,3]|join(', ') }}|{{ users|map(attribute='name')|join('/') }}|{{ "
     "['a','b']|map('upper')|list }}|{{ users|join(',', attribute='name') }}",
     "{\"users\": [{\"name\": \"x\"}, {\"name\": \"y\"}]}", "1, 2, 3|x/y|['A', 'B']|x,y"},
    {"f_select",
     "{{ [1,2,3,4]|select('odd')|list }}{{ [1,2,3,4]|reject('even')|list }}{{ "
     "[0,1,'',2]|select|list }}{{ users|selectattr('admin')|map(attribute='n')|list }}{{ "
     "users|rejectattr('admin')|map(attribute='n')|list }}{{ users|selectattr('n', 'equalto', "
     "'b')|list|length }}",
     "{\"users\": [{\"n\": \"a\", \"admin\": true}, {\"n\": \"b\", \"admin\": false}]}",
     "[1, 3][1, 3][1, 2]['a']['b']1"},
    {"f_default",
     "{{ x|default('d') }} {{ ''|default('e') }} {{ ''|default('e', true) }} {{ none|d('n', "
     "boolean=true) }} {{ 0|default(5) }}",
     "{}", "d  e n 0"},
    {"f_first_last_list",
     "{{ [1,2,3]|first }}{{ [1,2,3]|last }}{{ 'abc'|list }}{{ 'abc'|first }}{{ {'a':1}|list }}",
     "{}", "13['a', 'b', 'c']a['a']"},
    {"f_conversions",
     "{{ '42'|int }} {{ 'x'|int }} {{ 3.9|int }} {{ '2.5'|float }} {{ 3|float }} {{ 5|string ~ 'x' "
     "}} {{ '0x1A'|int(0, 16) }}",
     "{}", "42 0 3 2.5 3.0 5x 26"},
    {"f_case",
     "{{ 'hello wORLD'|upper }} {{ 'HeLLo'|lower }} {{ 'hello wORLD-foo'|title }} {{ 'hELLO "
     "world'|capitalize }}",
     "{}", "HELLO WORLD hello Hello World-Foo Hello world"},
    {"f_misc",
     "{{ 'aaa'|replace('a', 'b', 2) }} {{ [3,1,2,1]|unique|list }} {{ ['A','a','b']|unique|list }} "
     "{{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ [3,1,2]|sort }} {{ "
     "['b','A','c']|sort(reverse=true) }} {{ [1,2,3]|reverse|list }} {{ 'abc'|reverse }}",
     "{}", "bba [3, 1, 2] ['A', 'b'] 3 2.57 2.0 [1, 2, 3] ['c', 'b', 'A'] [3, 2, 1] cba"},
    {"f_more",
     "{{ [1,2,3,4,5]|batch(2)|list }} {{ 'x'|safe }} {{ 'a\\nb\\n\\nc'|indent(2) }}|{{ "
     "'a\\nb'|indent(2, true) }} {{ 'one two  three'|wordcount }} {{ [1,5,3]|max }} {{ [1,5,3]|min "
     "}} {{ [1,2]|sum }} {{ d|items|list }}",
     "{\"d\": {\"k\": \"v\"}}",
     "[[1, 2], [3, 4], [5]] x a\n  b\n\n  c|  a\n  b 3 5 1 3 [('k', 'v')]"},
    {"tests",
     "{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is "
     "sequence }}{{ 1 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ "
     "1.0 is float }}{{ true is boolean }}{{ true is true }}{{ 0 is false }}{{ false is false }}{{ "
     "3 is equalto 3 }}{{ 3 is eq(4) }}{{ 3 is odd }}{{ 4 is even }}{{ 2 is in [1,2] }}{{ x is "
     "sameas none }}{{ 5 is not none }}{{ 6 is divisibleby 3 }}",
     "{\"x\": null}",
     "TrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueFalseTrueTrueFalseTrueTrueTrueTrueTrueTrue"},
    {"str_methods",
     "[{{ '  a b  '.strip() }}][{{ 'xxaxx'.strip('x') }}][{{ '  a'.lstrip() }}][{{ "
     "'a\\n\\n'.rstrip('\\n') }}]{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a b c'.split(' "
     "', 1) }}{{ 'a-b-c'.rsplit('-', 1) }}",
     "{}", "[a b][a][a][a]['a', 'b', '', 'c']['a', 'b']['a', 'b c']['a-b', 'c']"},
    {"str_methods2",
     "{{ 'abc'.startswith('a') }}{{ 'abc'.startswith(('x', 'ab')) }}{{ 'abc'.endswith('bc') }}{{ "
     "'aXa'.replace('a', 'b') }}{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'hello world'.title() }}{{ "
     "'hello'.capitalize() }}{{ 'hello'.find('l') }}{{ 'hello'.count('l') }}{{ ', '.join(['a', "
     "'b']) }}{{ '12'.isdigit() }}",
     "{}", "TrueTrueTruebXbABabHello WorldHello22a, bTrue"},
    {"dict_methods",
     "{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 0) }}{{ d.keys()|list }}{{ d.values()|list "
     "}}{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}",
     "{\"d\": {\"a\": 1, \"b\": 2}}", "1None0['a', 'b'][1, 2]a1b2"},
    {"globals", "{{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ dict(a=1) }}{{ namespace(x=1).x }}",
     "{}", "[0, 1, 2][1, 3, 5]{'a': 1}1"},
    {"unicode", "{{ s|length }}{{ s[0] }}{{ s|upper }}{{ s[::-1] }}",
     "{\"s\": \"\xc3"
     "\xb1"
     "and\xc3"
     "\xba"
     " \xe6"
     "\x97"
     "\xa5"
     "\xe6"
     "\x9c"
     "\xac"
     " \xf0"
     "\x9f"
     "\x99"
     "\x82"
     "\"}",
     "10\xc3"
     "\xb1"
     "\xc3"
     "\x91"
     "AND\xc3"
     "\x9a"
     " \xe6"
     "\x97"
     "\xa5"
     "\xe6"
     "\x9c"
     "\xac"
     " \xf0"
     "\x9f"
     "\x99"
     "\x82"
     "\xf0"
     "\x9f"
     "\x99"
     "\x82"
     " \xe6"
     "\x9c"
     "\xac"
     "\xe6"
     "\x97"
     "\xa5"
     " \xc3"
     "\xba"
     "dna\xc3"
     "\xb1"
     ""},
    {"json_context",
     "{{ messages[0]['content'] }}{{ messages[0].content }}{{ messages|length }}{{ x }}{{ y }}",
     "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"x\": 1.0, \"y\": "
     "12345678901234}",
     "hihi11.012345678901234"},
};

struct ErrorCase {
  const char* name;
  const char* source;
  const char* message;  // Python's message; ours ends with it (after "name:line: ")
};

const ErrorCase kErrors[] = {
    {"err_raise",
     "{% if true %}{{ raise_exception('Conversation roles must alternate!') }}{% endif %}",
     "Conversation roles must alternate!"},
    {"err_append", "{% set l = [] %}{{ l.append(1) }}",
     "SecurityError: access to attribute 'append' of 'list' object is unsafe."},
    {"err_undefined_attr", "{{ nope.attr }}", "UndefinedError: 'nope' is undefined"},
    {"err_concat", "{{ 'a' + 1 }}", "TypeError: can only concatenate str (not \"int\") to str"},
    {"err_divzero", "{{ 1 // 0 }}", "ZeroDivisionError: integer division or modulo by zero"},
    {"err_nsassign", "{% set d = {} %}{% set d.x = 1 %}",
     "TemplateRuntimeError: cannot assign attribute on non-namespace object"},
};

TEST(ChatTemplate, RendersLikePythonJinja2) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    try {
      ChatTemplate t(c.source, c.name);
      EXPECT_EQ(t.render(nlohmann::ordered_json::parse(c.context)), c.expected) << c.name;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.name << ": " << e.what();
    }
  }
}

TEST(ChatTemplate, RuntimeErrorsCarryPythonsMessage) {
  for (const ErrorCase& c : kErrors) {
    ChatTemplate t(c.source, c.name);
    try {
      t.render(json::object());
      ADD_FAILURE() << c.name << ": rendered without error";
    } catch (const tune::Error& e) {
      std::string got = e.what(), want = c.message;
      EXPECT_TRUE(got.size() >= want.size() &&
                  got.compare(got.size() - want.size(), want.size(), want) == 0)
          << c.name << ": got \"" << got << "\", want it to end with \"" << want << "\"";
    }
  }
}

TEST(ChatTemplate, RaiseExceptionSurfacesTheTemplatesMessage) {
  ChatTemplate t(
      "{% for m in messages %}{% if m.role == 'bad' %}"
      "{{ raise_exception('Unknown role: ' ~ m.role) }}{% endif %}{% endfor %}");
  try {
    t.render(json{{"messages", {{{"role", "user"}}, {{"role", "bad"}}}}});
    FAIL() << "expected raise_exception to throw";
  } catch (const tune::tmpl::TemplateException& e) {
    EXPECT_STREQ(e.what(), "Unknown role: bad");
  }
}

TEST(ChatTemplate, SyntaxErrorsNameTemplateLineAndColumn) {
  auto message = [](const std::string& source) {
    try {
      ChatTemplate t(source, "tpl");
    } catch (const tune::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}"),
            "tpl:3:10: template syntax error: unexpected end of print statement");
  EXPECT_EQ(
      message("{% for x in y %}"),
      "tpl:1:17: template syntax error: unexpected end of template, expected 'else' or 'endfor'");
  EXPECT_EQ(message("ok\n  {% frobnicate %}"),
            "tpl:2:6: template syntax error: Encountered unknown tag 'frobnicate'.");
  EXPECT_EQ(message("{{ x | nosuchfilter }}"),
            "tpl:1:8: template syntax error: No filter named 'nosuchfilter'.");
  EXPECT_EQ(message("{{ x is nosuchtest }}"),
            "tpl:1:6: template syntax error: No test named 'nosuchtest'.");
  EXPECT_EQ(message("{% break %}"), "tpl:1:4: template syntax error: 'break' outside of a loop");
  EXPECT_EQ(message("{# open comment"),
            "tpl:1:1: template syntax error: Missing end of comment tag");
  EXPECT_EQ(message("{{ 'unterminated }}"),
            "tpl:1:4: template syntax error: unexpected end of string");
  EXPECT_EQ(message("{{ (1 }}"), "tpl:1:7: template syntax error: unexpected '}', expected ')'");
}

TEST(ChatTemplate, GenerationSpansCoverAssistantTurns) {
  ChatTemplate t(
      "{% for m in messages %}<|{{ m.role }}|>\n"
      "{% if m.role == 'assistant' %}{% generation %}{{ m.content }}<|end|>{% endgeneration %}"
      "{% else %}{{ m.content }}<|end|>{% endif %}\n{% endfor %}");
  json ctx = {{"messages",
               {{{"role", "user"}, {"content", "héllo"}},
                {{"role", "assistant"}, {"content", "hi there"}},
                {{"role", "user"}, {"content", "again"}},
                {{"role", "assistant"}, {"content", "ünïcode ✓"}}}}};
  tune::tmpl::Rendered r = t.render_tracked(ctx);
  EXPECT_EQ(r.text, t.render(ctx));
  ASSERT_EQ(r.generation.size(), 2u);
  auto piece = [&](size_t i) {
    return r.text.substr(r.generation[i].begin, r.generation[i].end - r.generation[i].begin);
  };
  EXPECT_EQ(piece(0), "hi there<|end|>");
  EXPECT_EQ(piece(1), "ünïcode ✓<|end|>");
  EXPECT_LT(r.generation[0].end, r.generation[1].begin);
}

TEST(ChatTemplate, UndefinedCallableAndSandboxedMutationFail) {
  ChatTemplate call_undefined("{{ nothing() }}");
  EXPECT_THROW(call_undefined.render(json::object()), tune::Error);
  ChatTemplate pop("{{ d.pop('a') }}");
  EXPECT_THROW(pop.render(json{{"d", {{"a", 1}}}}), tune::Error);
  ChatTemplate ok("{{ d.get('a') }}");
  EXPECT_EQ(ok.render(json{{"d", {{"a", 1}}}}), "1");
}

}  // namespace
