#!/usr/bin/env python3
"""Golden chat-template renders for hearth-template, produced by jinja2 (the independent reference).

Every `prompt` / `error` in golden.jsonl was rendered by jinja2 configured exactly as Hugging Face
transformers renders `tokenizer.chat_template` (transformers/utils/chat_template_utils.py):
`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker,
loopcontrols])`,
filter `tojson` = `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
sort_keys=sort_keys)`, globals `raise_exception` (raises jinja2.TemplateError) and `strftime_now`,
and the render call `render(messages=..., tools=..., documents=None, add_generation_prompt=...,
bos_token=..., eos_token=...)`. `strftime_now` is pinned to FIXED_NOW (UTC) so output is
reproducible; the Rust side pins the same instant with `ChatTemplate::with_fixed_time`.

The template texts in templates/ come from public sources (llama.cpp's models/templates/ copies of the
models' tokenizer_config.json templates for Llama 3.2, Mistral-Nemo-Instruct-2407, Gemma 2 and
Phi-3.5; Qwen2.5's and Zephyr/TinyLlama's published chat_template strings). Mistral-Nemo's template is
the tool-calling generation of Mistral's templates (v0.3 style): [AVAILABLE_TOOLS], a
raise_exception alternation check, 9-character tool call ids.

Regenerate:  python3 -m venv /tmp/v && /tmp/v/bin/pip install jinja2==3.1.6 &&
             /tmp/v/bin/python generate.py > golden.jsonl
"""

import datetime
import json
import os
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = 1721952000 + 3 * 3600 + 4 * 60 + 5  # 2024-07-26T03:04:05Z

HERE = os.path.dirname(os.path.abspath(__file__))

TEMPLATES = {
    # name: (file, bos, eos)
    "llama-3.2": ("llama-3.2.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "mistral-nemo": ("mistral-nemo.jinja", "<s>", "</s>"),
    "qwen2.5": ("qwen2.5.jinja", "", "<|im_end|>"),
    "gemma-2": ("gemma-2.jinja", "<bos>", "<eos>"),
    "phi-3.5": ("phi-3.5.jinja", "<s>", "<|endoftext|>"),
    "zephyr": ("zephyr.jinja", "<s>", "</s>"),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": []},
    },
}

U = lambda c: {"role": "user", "content": c}
A = lambda c: {"role": "assistant", "content": c}
S = lambda c: {"role": "system", "content": c}

CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {
            "id": "call00001",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}},
        }
    ],
}
TWO_CALLS = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {"id": "callAAAA1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
        {"id": "callBBBB2", "type": "function", "function": {"name": "get_time", "arguments": {"tz": "Europe/Oslo"}}},
    ],
}
RESULT = {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"}

CONVERSATIONS = [
    # (case name, messages, tools)
    ("single", [U("What is the capital of France?")], None),
    ("system", [S("You are a terse assistant."), U("Name three primary colors.")], None),
    ("multi", [U("Hi!"), A("Hello! How can I help?"), U("Tell me a joke.")], None),
    ("multi-sys", [S("Answer in French."), U("Hi"), A("Bonjour !"), U("How are you?")], None),
    ("whitespace", [U("  padded question \n"), A("\n answer with spaces  "), U("\tnext\t")], None),
    ("unicode", [U("Grüße, 日本語, emoji 😀, quotes \"x\" and 'y', backslash \\ and <tag> & amp")], None),
    ("extra-keys", [{"role": "user", "content": "Hello", "name": "alice", "id": 7}], None),
    ("ends-assistant", [U("Say hi."), A("Hi.")], None),
    ("double-user", [U("First."), U("Second.")], None),
    ("tools-first", [U("What's the weather in Zürich?")], [WEATHER_TOOL, TIME_TOOL]),
    ("tools-call", [U("What's the weather in Zürich?"), CALL, RESULT], [WEATHER_TOOL]),
    ("tools-call-done", [S("Use tools."), U("Weather in Zürich?"), CALL, RESULT, A("It is 21.5 °C and clear.")], [WEATHER_TOOL]),
    ("tools-parallel", [U("Weather and time in Oslo?"), TWO_CALLS,
                        {"role": "tool", "tool_call_id": "callAAAA1", "content": "rain"},
                        {"role": "tool", "tool_call_id": "callBBBB2", "content": "12:00"}], [WEATHER_TOOL, TIME_TOOL]),
    ("tool-dict-content", [U("Weather?"), CALL, {"role": "tool", "tool_call_id": "call00001", "content": {"temp": 3, "ok": True, "note": None}}], [WEATHER_TOOL]),
]


# Single behaviours templates rely on, each rendered over SNIPPET_MESSAGES with bos "<s>", eos "</s>".
# Known divergences, left out here: minijinja iterates `none` as empty where jinja2 raises TypeError;
# `'%s' % x` string formatting is unsupported; a backslash-newline inside a string literal is kept
# (Python drops it).
SNIPPET_MESSAGES = [{"role": "user", "content": " Hi there "}, {"role": "assistant", "content": "Yo", "name": "bot"}]
SNIPPETS = [
    "{{ none }}|{{ true }}|{{ false }}|{{ [1, 'a', none] }}|{{ {'k': none, 'b': [true]} }}",
    "{{ messages[0] | string }}|{{ messages | map(attribute='role') | join(',') }}",
    "{{ 1.0 }}|{{ 2.5e20 }}|{{ 0.00001 }}|{{ 7 / 2 }}|{{ 4 / 2 }}|{{ 7 // 2 }}|{{ 7 % 3 }}|{{ 2 ** 10 }}|{{ 3 | float }}|{{ '5' | int + 1 }}",
    "{{ messages[0].content.strip() }}|{{ 'a,b'.split(',') }}|{{ 'Ab'.startswith('A') }}|{{ 'x y'.title() }}|{{ '  z '.lstrip() }}|{{ ' q  '.rstrip() }}|{{ 'q'.upper() }}|{{ 'Q'.lower() }}",
    "{{ messages[0]['content'].split() }}|{{ 'a-b-c'.split('-', 1) }}|{{ 'a\nb'.splitlines() }}|{{ 'abc'.replace('b', 'x') }}|{{ 'abc'.capitalize() }}|{{ 'abc'.endswith('c') }}|{{ 'Ab'.startswith(('x', 'A')) }}|{{ '--x--'.strip('-') }}",
    "{% for k, v in messages[1].items() %}{{ k }}={{ v }};{% endfor %}{{ messages[0].get('name', 'anon') }}|{{ messages[1].get('name') }}|{{ messages[0].keys() | list }}|{{ messages[1].values() | list }}",
    "{% set ns = namespace(n=0, s='') %}{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s + i|string %}{% endfor %}{{ ns.n }} {{ ns.s }} {{ messages|length }}",
    "  {% if true %}\nA\n  {% endif %}\n{% for m in messages %}\n    {{ m.role }}\n{% endfor %}\nB\n",
    "{%- for m in messages -%}\n  [{{ m.role }}]\n{%- endfor %}\n{# comment #}\nend\n\n",
    "{{ {'a': '<&>', 'b': [1, 2.0, none, true], 'c': {}} | tojson }}|{{ [1, {'x': []}] | tojson(indent=2) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ 'é\\\"\\\\\\n\\t\u0001' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ messages | tojson(separators=(',', ':')) }}",
    "{{ tools is defined }} {{ tools is none }} {{ documents is none }} {{ bos_token }}{{ eos_token }} {{ add_generation_prompt }}",
    "{{ 'x' in 'xyz' }} {{ 'role' in messages[0] }} {{ 'name' in messages[0] }} {{ messages[5] }}|{{ messages[-1].role }} {{ 'abcdef'[1:3] }} {{ 'abcdef'[:-1] }} {{ messages[1:] | length }}",
    "{{ 'a' is string }} {{ 1 is number }} {{ [1] is sequence }} {{ {} is mapping }} {{ 'a' is iterable }} {{ none is none }} {{ x is defined }} {{ messages[0].nope is defined }} {{ 3 is odd }}",
    "{{ x | default('d') }}|{{ none | default('d') }}|{{ none | default('d', true) }}|{{ '' | default('e', true) }}|{{ [3, 1, 2] | sort | list }}|{{ range(3) | list }}|{{ [1, 2] + [3] }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}",
    "{% set x %}captured {{ messages[1].content }}{% endset %}{{ x }}|{% macro m(a, b='d') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, b=2) }}|{{ (messages | first).role }}|{{ (messages | last).content }}",
    "{{ 'abc' | upper }}|{{ 'ab cd' | title }}|{{ 'abc' | capitalize }}|{{ 'aXa' | replace('a', 'b') }}|{{ '  t  ' | trim }}|{{ 'abc' | length }}|{{ messages[0].content | trim | length }}|{{ [1, 2, 2] | unique | list }}",
    "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }}/{{ loop.revindex }};{% endfor %}{% for m in messages if m.role == 'assistant' %}{{ m.name }}{% endfor %}",
    "{{ 'Hello {}, {}!'.format('a', 1) }}|{{ strftime_now('%Y-%m-%d') }}|{{ '<b>&</b>' }}|{{ 'x' * 3 }}|{{ messages[0].content ~ '!' }}",
    "{% if messages[0].content is defined and messages[0].content %}yes{% else %}no{% endif %}{% if messages[0].missing %}x{% endif %}{% if not messages[0].missing %}y{% endif %}",
    "{{ raise_exception('Only user and assistant roles are supported!') }}",
    "{% if messages[1].role != 'user' %}{{ raise_exception('Conversation roles must alternate, got ' + messages[1].role) }}{% endif %}",
    "{{ undefined_thing.attr }}",
    "{{ 'a' ~ 1 ~ 2.5 }}|{{ none.x is defined }}|{{ none.x }}|{% if messages[0].tool_calls %}t{% else %}f{% endif %}|{{ messages[0].content.content is defined }}",
    "{% for m in messages[::-1] %}{{ m.role }},{% endfor %}|{{ [1, 2, 3][-1] }}|{{ 'abc' | reverse }}|{{ 'abc' | list }}|{{ 'abc'.find('c') }}|{{ 'aab'.lstrip('a') }}|{{ 'abc'.count('b') }}",
    "{{ 'x</think>\n\ny'.split('</think>')[-1].lstrip('\n') }}|{% set c = messages[0].content if messages[0].content is string else '' %}{{ c }}|{{ 'a' if none else 'b' }}|{{ 'T' if false }}|{{ 3 > 2 and 'x' or 'y' }}|{{ 0 or 'z' }}",
    "{{ -1 | abs }}|{{ 3.7 | round }}|{{ 3.7 | round | int }}|{{ 2.5 | round(0, 'floor') }}|{{ 'x\ny' | indent(2) }}|{% set a, b = 1, 2 %}{{ a + b }}|{{ dict(a=1) }}|{{ 10000000000000000000000 }}",
    "{{ true is true }} {{ 0 is false }} {{ none is not none }} {{ 3 is divisibleby 3 }} {{ 'a' is lower }} {{ messages is iterable }} {{ 2 is even }} {{ 'a' is eq 'a' }}",
    "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }};{{ loop.cycle('o', 'e') }};{% endfor %}",
    "{{ [{'type': 'text', 'text': 'a'}, {'type': 'image'}, {'type': 'text', 'text': 'b'}] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') }}|{{ messages | rejectattr('role', 'eq', 'user') | list | length }}|{{ [3, 1] | max }}|{{ [3, 1] | min }}|{{ [1, 2] | sum }}",
    "{{ messages[0].content | replace(' ', '_') }}",
    "{{ 'a' ~ none ~ true ~ [1] }}",
    "{% for m in messages %}\n  {% if m.role == 'assistant' %}\n  {% generation %}\n  <{{ m.content }}>\n  {% endgeneration %}\n  {%- generation -%}  [{{ m.role }}]  {%- endgeneration %}\n  {% endif %}\n{% endfor %}|{%+ generation +%} x {%endgeneration%}|",
    "{{ none + 'x' }}",
    "{{ messages[0].content + 1 }}",
    "{{ messages[0] | tojson(indent=none) }}|{{ 1.5 | string }}|{{ [1.0] | string }}",
    "{{ messages | first | tojson }}{% for i in range(3) %}{% if i == 1 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{{ (1, 'a') }}|{{ (1,) }}|{{ [1, 2] | reverse | list }}|{{ messages | batch(1) | list | length }}|{{ {'b': 1, 'a': 2} | dictsort }}|{{ {'k': 'v'} | items | list }}",
]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.datetime.fromtimestamp(FIXED_NOW, datetime.timezone.utc).strftime(fmt)


class AssistantTracker(Extension):
    """transformers' `{% generation %}` tag, as far as rendering goes: it outputs its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# strftime directives checked against Python's datetime.strftime (UTC).
STRFTIME_TIMES = [0, 951782400, 1721963045, 1709210096, 4102444799, -86400 * 365 - 1, 1104537600, 1230681600, 1293753600, 1609459199]
STRFTIME_FORMATS = ["%G-W%V-%u %g %C %w", "%c|%D|%r|%R|%x|%X", "%-d/%-m %-H:%-M:%-S %-j", "%Y-%m-%d %H:%M:%S", "%d %b %Y", "%B %d, %Y", "%a %A %b %B", "%y %j %I %p %%", "%F %T", "%e|%H:%M"]


def main():
    env = environment()
    out = sys.stdout
    for case, messages, tools in CONVERSATIONS:
        out.write(json.dumps({"conversation": case, "messages": messages, "tools": tools}, ensure_ascii=False) + "\n")
    for name, (path, bos, eos) in TEMPLATES.items():
        with open(os.path.join(HERE, "templates", path), encoding="utf-8") as f:
            source = f.read()
        template = env.from_string(source)
        for case, messages, tools in CONVERSATIONS:
            for agp in (True, False):
                row = {"template": name, "case": case, "bos_token": bos, "eos_token": eos,
                       "add_generation_prompt": agp}
                try:
                    row["prompt"] = template.render(messages=messages, tools=tools, documents=None,
                                                    add_generation_prompt=agp, bos_token=bos, eos_token=eos)
                except jinja2.exceptions.TemplateError as e:
                    if type(e) is jinja2.exceptions.TemplateError:
                        row["error"] = str(e)
                    else:
                        row["failure"] = f"{type(e).__name__}: {e}"
                except Exception as e:  # noqa: BLE001 - recorded: the Rust side must fail too
                    row["failure"] = f"{type(e).__name__}: {e}"
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    for src in SNIPPETS:
        row = {"snippet": src}
        try:
            row["prompt"] = env.from_string(src).render(messages=SNIPPET_MESSAGES, tools=None, documents=None,
                                                        add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
        except jinja2.exceptions.TemplateError as e:
            if type(e) is jinja2.exceptions.TemplateError:
                row["error"] = str(e)
            else:
                row["failure"] = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001
            row["failure"] = f"{type(e).__name__}: {e}"
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    for t in STRFTIME_TIMES:
        dt = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
        for fmt in STRFTIME_FORMATS:
            out.write(json.dumps({"strftime": fmt, "unix": t, "expect": dt.strftime(fmt)}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
