#!/usr/bin/python3
"""Renders the small feature templates of tests/unit/chat_template_test.cpp with Python Jinja2 (as
render_template.py configures it) and prints them as the C++ case tables (kCases, kErrors) to
paste there: the source of every expected string in that test."""
import json, sys
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
import render_template as rt
env = rt.make_environment()
cases = [
 # whitespace control / trim_blocks / lstrip_blocks / comments / raw
 ("ws_trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", {}),
 ("ws_lstrip", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
 ("ws_minus", "a   {%- if true -%}   b   {%- endif -%}   c", {}),
 ("ws_var_minus", "x  {{- 1 -}}  y {{ 2 }}\nz", {}),
 ("ws_plus", "a\n  {%+ if true %}b{% endif %}", {}),
 ("ws_comment", "a\n  {# note #}\nb{#- x -#}  c", {}),
 ("ws_raw", "{% raw %}{{ not }}{% endraw %}|{%- raw -%}  {% x %}  {%- endraw -%}  |", {}),
 ("ws_trailing_newline", "hi\n", {}),
 ("ws_crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
 # literals and printing
 ("print_values", "{{ [1, 'a', none, true, 1.5, {'k': (1,)}] }}|{{ none }}|{{ True }}|{{ 2.0 }}|{{ 1e20 }}|{{ 0.0001 }}|{{ 1e-5 }}", {}),
 ("print_repr_quotes", "{{ [\"it's\", 'say \"hi\"', 'a\\nb', 'tab\\t'] }}", {}),
 ("string_escapes", "{{ 'a\\tb\\\\c\\'d' }}|{{ \"\\u00e9\\x41\" }}|{{ 'ab' 'cd' }}", {}),
 ("tuple_print", "{{ (1, 2) }}{{ () }}{{ (3,) }}", {}),
 ("dict_order", "{{ {'b': 1, 'a': 2} }}{% for k in {'z': 1, 'y': 2} %}{{ k }}{% endfor %}", {}),
 # arithmetic
 ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 % 2 }} {{ -7.5 // 2 }} {{ 1 + 2.5 }} {{ 0.1 + 0.2 }}", {}),
 ("concat", "{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1] + [2, 3] }}|{{ [0] * 2 }}|{{ 'x' + 'y' }}", {}),
 ("unary", "{{ -3 }} {{ - 2.5 }} {{ not true }} {{ not 0 }} {{ -x|abs }}", {"x": 4}),
 ("compare", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1,2] == [1,2] }} {{ true == 1 }} {{ 'a' != 'a' }} {{ 2 >= 2 }}", {}),
 ("in_ops", "{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k':1} }} {{ 'z' not in 'abc' }} {{ 3 not in [3] }}", {}),
 ("logic", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ none or [] }} {{ '' and 1 }}", {}),
 ("condexpr", "{{ 'a' if x else 'b' }}{{ 'c' if not x }}|{{ 1 if y > 2 else 2 if y > 1 else 3 }}", {"x": False, "y": 2}),
 # attribute and item access, slicing
 ("access", "{{ d.a }} {{ d['a'] }} {{ d.b.c }} {{ l[0] }} {{ l[-1] }} {{ l.1 }} {{ d.missing }}|{{ d['missing'] is defined }}", {"d": {"a": 1, "b": {"c": 2}}, "l": [10, 20, 30]}),
 ("slicing", "{{ s[::-1] }} {{ s[1:] }} {{ s[:2] }} {{ l[::-1] }} {{ l[1:] }} {{ l[:n] }} {{ l[-2:] }} {{ l[::2] }} {{ u[1:3] }} {{ u[::-1] }}", {"s": "hello", "l": [1, 2, 3, 4], "n": 2, "u": "héllo"}),
 ("undefined", "[{{ nope }}]{{ nope is defined }}{{ nope is undefined }}{% if nope %}t{% else %}f{% endif %}{{ nope | default('dflt') }}{{ nope|length }}{% for x in nope %}x{% endfor %}", {}),
 ("none_attr", "{{ n.foo is defined }}{{ n['x'] is defined }}", {"n": None}),
 # statements
 ("set_scoping", "{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = i * 10 %}{{ x }}{% endfor %}{{ x }}", {}),
 ("set_block", "{% set body %}  hi {{ 1 + 1 }}\n{% endset %}[{{ body }}]{% set up | upper %}abc{% endset %}{{ up }}", {}),
 ("set_tuple", "{% set a, b = [1, 2] %}{{ a }}{{ b }}", {}),
 ("if_elif", "{% for v in [1,2,3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %} {% endfor %}", {}),
 ("for_loop_vars", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.cycle('o','e') }};{% endfor %}", {}),
 ("for_prev_next", "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }}|{{ loop.previtem is defined }};{% endfor %}", {}),
 ("for_else_filter", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in range(10) if x is odd %}{{ x }}{{ loop.length }},{% endfor %}", {}),
 ("for_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d|dictsort %}{{ k }}{{ v }}{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}", {"d": {"b": 2, "a": 1}}),
 ("loop_controls", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
 ("nested_loops", "{% for a in [1,2] %}{% for b in [3,4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
 ("macro", "{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet('Cy', punct='?') }} {{ greet(name='Di', greeting='Yo') }}", {}),
 ("macro_kwargs_varargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, x=4) }}", {}),
 ("macro_scope", "{% set g = 'G' %}{% macro m() %}{% set g = 'L' %}{{ g }}{% endmacro %}{{ m() }}{{ g }}", {}),
 ("call_block", "{% macro box(title) %}[{{ title }}:{{ caller() }}]{% endmacro %}{% call box('t') %}inside {{ 1 }}{% endcall %}", {}),
 ("filter_block", "{% filter upper %}hello {{ 'world' }}{% endfilter %}|{% filter trim | upper %}  x  {% endfilter %}", {}),
 ("namespace", "{% set ns = namespace(a=1, found=false) %}{% for i in [1,2,3] %}{% set ns.a = ns.a + i %}{% if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.a }}{{ ns.found }}", {}),
 ("generation_basic", "A{% generation %}B{{ 'é' }}{% endgeneration %}C{% generation %}D{% endgeneration %}", {}),
 # filters
 ("f_trim_tojson", "[{{ '  x \\n' | trim }}][{{ 'xxaxx' | trim('x') }}]{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ d | tojson(sort_keys=true) }}|{{ 'é\\n\"' | tojson }}|{{ [] | tojson(indent=2) }}|{{ d | tojson(separators=(',', ':')) }}", {"d": {"b": [1, 2.5, None, True], "a": "ü", "e": {}}}),
 ("f_length", "{{ 'héllo'|length }} {{ [1,2]|count }} {{ {'a':1}|length }}", {}),
 ("f_join_map", "{{ [1,2,3]|join(', ') }}|{{ users|map(attribute='name')|join('/') }}|{{ ['a','b']|map('upper')|list }}|{{ users|join(',', attribute='name') }}", {"users": [{"name": "x"}, {"name": "y"}]}),
 ("f_select", "{{ [1,2,3,4]|select('odd')|list }}{{ [1,2,3,4]|reject('even')|list }}{{ [0,1,'',2]|select|list }}{{ users|selectattr('admin')|map(attribute='n')|list }}{{ users|rejectattr('admin')|map(attribute='n')|list }}{{ users|selectattr('n', 'equalto', 'b')|list|length }}", {"users": [{"n": "a", "admin": True}, {"n": "b", "admin": False}]}),
 ("f_default", "{{ x|default('d') }} {{ ''|default('e') }} {{ ''|default('e', true) }} {{ none|d('n', boolean=true) }} {{ 0|default(5) }}", {}),
 ("f_first_last_list", "{{ [1,2,3]|first }}{{ [1,2,3]|last }}{{ 'abc'|list }}{{ 'abc'|first }}{{ {'a':1}|list }}", {}),
 ("f_conversions", "{{ '42'|int }} {{ 'x'|int }} {{ 3.9|int }} {{ '2.5'|float }} {{ 3|float }} {{ 5|string ~ 'x' }} {{ '0x1A'|int(0, 16) }}", {}),
 ("f_case", "{{ 'hello wORLD'|upper }} {{ 'HeLLo'|lower }} {{ 'hello wORLD-foo'|title }} {{ 'hELLO world'|capitalize }}", {}),
 ("f_misc", "{{ 'aaa'|replace('a', 'b', 2) }} {{ [3,1,2,1]|unique|list }} {{ ['A','a','b']|unique|list }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ [3,1,2]|sort }} {{ ['b','A','c']|sort(reverse=true) }} {{ [1,2,3]|reverse|list }} {{ 'abc'|reverse }}", {}),
 ("f_more", "{{ [1,2,3,4,5]|batch(2)|list }} {{ 'x'|safe }} {{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }} {{ 'one two  three'|wordcount }} {{ [1,5,3]|max }} {{ [1,5,3]|min }} {{ [1,2]|sum }} {{ d|items|list }}", {"d": {"k": "v"}}),
 # tests
 ("tests", "{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}{{ 1 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ true is true }}{{ 0 is false }}{{ false is false }}{{ 3 is equalto 3 }}{{ 3 is eq(4) }}{{ 3 is odd }}{{ 4 is even }}{{ 2 is in [1,2] }}{{ x is sameas none }}{{ 5 is not none }}{{ 6 is divisibleby 3 }}", {"x": None}),
 # methods
 ("str_methods", "[{{ '  a b  '.strip() }}][{{ 'xxaxx'.strip('x') }}][{{ '  a'.lstrip() }}][{{ 'a\\n\\n'.rstrip('\\n') }}]{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a-b-c'.rsplit('-', 1) }}", {}),
 ("str_methods2", "{{ 'abc'.startswith('a') }}{{ 'abc'.startswith(('x', 'ab')) }}{{ 'abc'.endswith('bc') }}{{ 'aXa'.replace('a', 'b') }}{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'hello world'.title() }}{{ 'hello'.capitalize() }}{{ 'hello'.find('l') }}{{ 'hello'.count('l') }}{{ ', '.join(['a', 'b']) }}{{ '12'.isdigit() }}", {}),
 ("dict_methods", "{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 0) }}{{ d.keys()|list }}{{ d.values()|list }}{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}", {"d": {"a": 1, "b": 2}}),
 ("globals", "{{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ dict(a=1) }}{{ namespace(x=1).x }}", {}),
 ("unicode", "{{ s|length }}{{ s[0] }}{{ s|upper }}{{ s[::-1] }}", {"s": "ñandú 日本 🙂"}),
 ("json_context", "{{ messages[0]['content'] }}{{ messages[0].content }}{{ messages|length }}{{ x }}{{ y }}", {"messages": [{"role": "user", "content": "hi"}], "x": 1.0, "y": 12345678901234}),
]
error_cases = [
 ("err_raise", "{% if true %}{{ raise_exception('Conversation roles must alternate!') }}{% endif %}", {}),
 ("err_append", "{% set l = [] %}{{ l.append(1) }}", {}),
 ("err_undefined_attr", "{{ nope.attr }}", {}),
 ("err_concat", "{{ 'a' + 1 }}", {}),
 ("err_divzero", "{{ 1 // 0 }}", {}),
 ("err_nsassign", "{% set d = {} %}{% set d.x = 1 %}", {}),
]
def cpp_str(s):
    out = '"'
    for ch in s.encode('utf-8'):
        c = chr(ch)
        if c == '"': out += '\\"'
        elif c == '\\': out += '\\\\'
        elif c == '\n': out += '\\n'
        elif c == '\t': out += '\\t'
        elif c == '\r': out += '\\r'
        elif 32 <= ch < 127: out += c
        else: out += '\\x%02x""' % ch
    return out + '"'
lines = []
for name, src, ctx in cases:
    try:
        text, spans = rt.render_one(env, src, ctx)
    except Exception as e:
        print("FAIL", name, e, file=sys.stderr); continue
    lines.append("    {%s, %s, %s, %s}," % (cpp_str(name), cpp_str(src), cpp_str(json.dumps(ctx, ensure_ascii=False)), cpp_str(text)))
print("// CASES")
print("\n".join(lines))
print("// ERRORS")
for name, src, ctx in error_cases:
    try:
        rt.render_one(env, src, ctx); print("NO ERROR", name)
    except Exception as e:
        print("    {%s, %s, %s}," % (cpp_str(name), cpp_str(src), cpp_str(rt.error_text(e))))
