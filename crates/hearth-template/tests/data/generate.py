#!/usr/bin/env python3
"""Golden chat-template renders for hearth-template, produced by jinja2 (the independent reference).

Every `prompt` / `error` in golden.jsonl was rendered by jinja2 configured exactly as Hugging Face
transformers renders `tokenizer.chat_template` (transformers/utils/chat_template_utils.py):
`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])`,
filter `tojson` = `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
sort_keys=sort_keys)`, globals `raise_exception` (raises jinja2.TemplateError) and `strftime_now`,
and the render call `render(messages=..., tools=..., documents=None, add_generation_prompt=...,
bos_token=..., eos_token=...)`. `strftime_now` is pinned to FIXED_NOW (UTC) so output is
reproducible; the Rust side pins the same instant with `ChatTemplate::with_fixed_time`.

The template texts in templates/ come from public sources (llama.cpp's models/templates/ copies of the
models' tokenizer_config.json templates; Qwen2.5's and Zephyr's published chat_template strings).

Regenerate:  python3 -m venv /tmp/v && /tmp/v/bin/pip install jinja2==3.1.6 &&
             /tmp/v/bin/python generate.py > golden.jsonl
"""

import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
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


class RaisedByTemplate(Exception):
    pass


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.datetime.fromtimestamp(FIXED_NOW, datetime.timezone.utc).strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
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
    for name, (path, bos, eos) in TEMPLATES.items():
        with open(os.path.join(HERE, "templates", path), encoding="utf-8") as f:
            source = f.read()
        template = env.from_string(source)
        for case, messages, tools in CONVERSATIONS:
            for agp in (True, False):
                row = {"template": name, "case": case, "bos_token": bos, "eos_token": eos,
                       "add_generation_prompt": agp, "messages": messages, "tools": tools}
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
    for t in STRFTIME_TIMES:
        dt = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
        for fmt in STRFTIME_FORMATS:
            out.write(json.dumps({"strftime": fmt, "unix": t, "expect": dt.strftime(fmt)}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
