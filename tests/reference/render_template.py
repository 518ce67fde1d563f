#!/usr/bin/python3
"""Renders chat templates with Python Jinja2 configured the way Hugging Face transformers does
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls, transformers' tojson,
raise_exception, strftime_now and the {% generation %} block tag). The reference the C++
engine in src/template/ is compared against, byte for byte.

  render_template.py TEMPLATE_FILE < context.json        -> rendered text on stdout
  render_template.py --batch < cases.json                -> JSON results on stdout
      cases.json: [{"template": "...", "context": {...}}, ...]
      results:    [{"text": "...", "generation": [[begin, end], ...]} | {"error": "..."}, ...]
      (generation spans are UTF-8 byte offsets, as the C++ engine reports them)

Run with Debian's /usr/bin/python3 (python3-jinja2). Exit status 3 with the message on stderr
when the template raises (raise_exception or any other Jinja error).
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(Exception):
    pass


class GenerationExtension(Extension):
    """{% generation %}...{% endgeneration %}: renders its body and records where it landed."""

    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        environment.extend(generation_blocks=None)

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render_generation", [], lineno=lineno), [], [],
                               body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _render_generation(self, context, caller):
        text = caller()
        if self.environment.generation_blocks is not None:
            self.environment.generation_blocks.append(text)
        return text


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers overrides Jinja's tojson: no HTML escaping, and exposes json.dumps' options.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def raise_exception(message):
    raise TemplateError(message)


def strftime_now(format):
    return datetime.now().strftime(format)


def make_environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationExtension, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


class Tracker:
    """Collects generation block outputs and maps them to byte spans of the final text."""

    def __init__(self, env):
        self.env = env

    def render(self, template, context):
        self.env.generation_blocks = []
        text = template.render(**context)
        blocks, self.env.generation_blocks = self.env.generation_blocks, None
        # Like transformers' tracker: locate each block's output in order in the rendered text.
        spans, pos = [], 0
        for block in blocks:
            at = text.find(block, pos)
            if at < 0:
                continue
            begin = len(text[:at].encode("utf-8"))
            end = begin + len(block.encode("utf-8"))
            spans.append([begin, end])
            pos = at + len(block)
        return text, spans


def render_one(env, source, context):
    template = env.from_string(source)
    return Tracker(env).render(template, context)


def error_text(e):
    if isinstance(e, TemplateError):
        return str(e)
    return f"{type(e).__name__}: {e}"


def main():
    env = make_environment()
    if len(sys.argv) == 2 and sys.argv[1] == "--batch":
        results = []
        for case in json.load(sys.stdin):
            try:
                text, spans = render_one(env, case["template"], case["context"])
                results.append({"text": text, "generation": spans})
            except Exception as e:  # noqa: BLE001 — every failure is a result to compare
                results.append({"error": error_text(e), "raised": isinstance(e, TemplateError)})
        sys.stdout.write(json.dumps(results, ensure_ascii=False))
        return 0
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        source = f.read()
    try:
        text, _ = render_one(env, source, json.load(sys.stdin))
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(error_text(e) + "\n")
        return 3
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
