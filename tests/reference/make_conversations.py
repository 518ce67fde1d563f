#!/usr/bin/python3
"""Writes conversations.json: the conversations every chat template in the npm packages is
rendered with, by tune.cpp and by Python Jinja2 (render_template.py), and compared byte for byte.
Each entry: name, messages, and optionally tools, add_generation_prompt, enable_thinking."""
import json
import os

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web — returns the top results.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": "integer", "default": 5},
        "score": {"type": "number", "minimum": 0.5}}, "required": ["query"]}}}

SYSTEMS = ["You are a helpful assistant.", "  Be terse.\n", "Réponds en français. 日本語も可。 🌍",
           "Line one\nLine two\n\nLine four", ""]
USERS = ["Hello!", "What is 2 + 2?", "  padded question  ", "Tell me a joke about \"quotes\" and 'apostrophes'.",
         "Unicode: naïve café, Ελληνικά, עברית, العربية, हिन्दी, ไทย, 한국어, 中文 👩‍👩‍👧 👍🏽",
         "Tabs\tand\nnewlines\r\nand {{ braces }} {% tags %}", "", "<think>not really</think>",
         "a\\b\\c and json {\"k\": [1, 2]}"]
ASSISTANTS = ["Hi! How can I help?", "4", "  Sure.  ", "Here you go:\n```python\nprint('hi')\n```",
              "<think>\nLet me think.\n</think>\n\nThe answer is 42.", "Ça marche ✅", ""]


def call(name, args, as_string, call_id=None):
    c = {"type": "function", "function": {"name": name,
                                          "arguments": json.dumps(args, ensure_ascii=False) if as_string else args}}
    if call_id:
        c["id"] = call_id
    return c


def conversations():
    out = []

    def add(name, messages, **kw):
        out.append({"name": name, "messages": messages, **kw})

    # Single turns with and without system, both generation-prompt settings.
    for i, u in enumerate(USERS):
        for agp in (True, False):
            add(f"single_{i}_agp{int(agp)}", [{"role": "user", "content": u}], add_generation_prompt=agp)
    for i, s in enumerate(SYSTEMS):
        add(f"system_{i}", [{"role": "system", "content": s}, {"role": "user", "content": USERS[i]}],
            add_generation_prompt=True)
    # Multi-turn.
    for turns in (2, 3, 5):
        msgs = []
        for t in range(turns):
            msgs.append({"role": "user", "content": USERS[t % len(USERS)]})
            msgs.append({"role": "assistant", "content": ASSISTANTS[t % len(ASSISTANTS)]})
        add(f"multi_{turns}_closed", msgs, add_generation_prompt=False)
        add(f"multi_{turns}_open", msgs + [{"role": "user", "content": "And then?"}], add_generation_prompt=True)
        add(f"multi_{turns}_system", [{"role": "system", "content": SYSTEMS[0]}] + msgs,
            add_generation_prompt=False)
    # Thinking in content and in reasoning_content; enable_thinking on/off.
    think = [{"role": "user", "content": "Why is the sky blue?"},
             {"role": "assistant", "content": ASSISTANTS[4]},
             {"role": "user", "content": "Shorter please."}]
    for et in (True, False):
        add(f"thinking_content_et{int(et)}", think, add_generation_prompt=True, enable_thinking=et)
        add(f"thinking_last_et{int(et)}", think + [{"role": "assistant", "content": "Rayleigh scattering."}],
            add_generation_prompt=False, enable_thinking=et)
    add("reasoning_field", [{"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Hello.", "reasoning_content": "\nGreet back.\n"},
                            {"role": "user", "content": "Bye"},
                            {"role": "assistant", "content": "Bye!", "reasoning_content": "Say bye."}],
        add_generation_prompt=False)
    add("reasoning_none", [{"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello.", "reasoning_content": None}],
        add_generation_prompt=False)
    add("generation_prompt_no_flag", [{"role": "user", "content": "hi"}])
    # Tools and tool calls: arguments as objects and as JSON strings, parallel calls.
    for as_string in (False, True):
        tag = "str" if as_string else "obj"
        add(f"tools_call_{tag}", [
            {"role": "system", "content": "Use tools when needed."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None,
             "tool_calls": [call("get_weather", {"city": "Paris", "unit": "celsius"}, as_string, "call_1")]},
            {"role": "tool", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}", "tool_call_id": "call_1"},
            {"role": "assistant", "content": "It is 21.5 °C and clear."}],
            tools=[WEATHER, SEARCH], add_generation_prompt=False)
        add(f"tools_parallel_{tag}", [
            {"role": "user", "content": "Weather in Paris and Tokyo, and search news."},
            {"role": "assistant", "content": None, "tool_calls": [
                call("get_weather", {"city": "Paris"}, as_string),
                call("get_weather", {"city": "東京"}, as_string),
                call("search", {"query": "news", "limit": 3, "score": 0.75, "tags": [], "opts": {}}, as_string)]},
            {"role": "tool", "content": "18"}, {"role": "tool", "content": "25"},
            {"role": "tool", "content": "[]"}],
            tools=[WEATHER, SEARCH], add_generation_prompt=True)
        add(f"tools_content_and_call_{tag}", [
            {"role": "user", "content": "Search for cats"},
            {"role": "assistant", "content": "Let me search.",
             "tool_calls": [call("search", {"query": "cats"}, as_string)]},
            {"role": "tool", "content": "<tool_response>cats</tool_response>"},
            {"role": "assistant", "content": "Found cats."},
            {"role": "user", "content": "More"}],
            tools=[SEARCH], add_generation_prompt=True, enable_thinking=False)
    add("tools_no_calls", [{"role": "user", "content": "Just chat."}], tools=[WEATHER], add_generation_prompt=True)
    add("tools_with_system", [{"role": "system", "content": SYSTEMS[2]}, {"role": "user", "content": "Hi"}],
        tools=[SEARCH], add_generation_prompt=True)
    add("tools_empty_list", [{"role": "user", "content": "Hi"}], tools=[], add_generation_prompt=True)
    # Shapes some templates reject (role alternation) or treat specially.
    add("two_users", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        add_generation_prompt=True)
    add("assistant_first", [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}],
        add_generation_prompt=True)
    add("two_systems", [{"role": "system", "content": "one"}, {"role": "system", "content": "two"},
                        {"role": "user", "content": "hi"}], add_generation_prompt=True)
    add("content_parts", [{"role": "user", "content": [{"type": "text", "text": " Describe "},
                                                       {"type": "image"},
                                                       {"type": "text", "text": "this image."}]}],
        add_generation_prompt=True)
    add("system_parts", [{"role": "system", "content": [{"type": "text", "text": "Sys in parts"}]},
                         {"role": "user", "content": "hi"}], add_generation_prompt=True)
    add("empty_messages_everywhere", [{"role": "system", "content": ""}, {"role": "user", "content": ""},
                                      {"role": "assistant", "content": ""}], add_generation_prompt=False)
    add("long_unicode", [{"role": "user", "content": "🙂" * 200 + "\u00a0\u3000" + "x" * 300}],
        add_generation_prompt=True)
    return out


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conversations.json")
    convs = conversations()
    with open(path, "w", encoding="utf-8") as f:
        json.dump(convs, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(convs)} conversations -> {path}")
