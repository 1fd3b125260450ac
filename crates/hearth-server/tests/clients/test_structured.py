"""Structured outputs and tools through the official clients, against a running Hearth.

Every answer here comes from the real model (also a 135M one): JSON answers must parse and
validate against their schema (checked with the independent `jsonschema` package), tool calls
must name an offered function with arguments valid against its parameters.
Environment as in test_clients.py.
"""

import json
import os

import jsonschema
import pytest

URL = os.environ.get("HEARTH_URL", "").rstrip("/")
MODEL = os.environ.get("HEARTH_MODEL", "smollm2:135m")

pytestmark = pytest.mark.skipif(not URL, reason="HEARTH_URL is not set: no server to test")

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
        "role": {"enum": ["admin", "user", "guest"]},
        "email": {"type": ["string", "null"], "maxLength": 40},
    },
    "required": ["name", "age", "languages", "role", "email"],
    "additionalProperties": False,
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}

TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 30}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}

TOOLS = [WEATHER, TIME]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Oslo, and what time is it there?"}]


@pytest.fixture(scope="module")
def oai():
    import openai

    return openai.OpenAI(base_url=URL + "/v1", api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def oll():
    import ollama

    return ollama.Client(host=URL)


def check_calls(calls, names=None, most=None):
    """Each call names an offered tool and carries arguments valid for it; ids are unique."""
    assert calls, "expected tool calls"
    if most is not None:
        assert len(calls) <= most
    ids = [c.id for c in calls]
    assert len(set(ids)) == len(ids)
    for c in calls:
        assert c.type == "function"
        assert c.id.startswith("call_")
        assert c.function.name in (names or SCHEMAS)
        jsonschema.validate(json.loads(c.function.arguments), SCHEMAS[c.function.name])


# ---------- OpenAI: structured outputs ----------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_openai_json_schema_always_validates(oai, seed):
    r = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a made-up person as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
        temperature=1.0,
        seed=seed,
        max_tokens=120,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), PERSON)


def test_openai_json_schema_is_complete_even_with_few_tokens(oai):
    r = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a made-up person as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
        max_tokens=len('{"name":"","age":0,"languages":[],"role":"user","email":null}') + 4,
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)


def test_openai_json_object(oai):
    r = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me a JSON object about cats."}],
        response_format={"type": "json_object"},
        max_tokens=60,
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_openai_parse_helper(oai):
    """The client's `parse` helper sends a strict schema and reads the answer back."""
    pydantic = pytest.importorskip("pydantic")

    class City(pydantic.BaseModel):
        name: str
        population: int
        country: str

    r = oai.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me about Oslo."}],
        response_format=City,
        max_tokens=80,
    )
    city = r.choices[0].message.parsed
    assert isinstance(city, City)


def test_openai_unsupported_schema_is_a_clear_400(oai):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(
            model=MODEL,
            messages=ASK,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a+$"}},
            },
        )
    assert "pattern" in str(e.value)


# ---------- OpenAI: tools ----------


def test_openai_tool_choice_required(oai):
    r = oai.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=150
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    check_calls(choice.message.tool_calls)


def test_openai_tool_choice_named(oai):
    r = oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=100,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    check_calls(choice.message.tool_calls, names=["get_time"], most=1)


def test_openai_no_parallel_calls(oai):
    r = oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=100,
    )
    check_calls(r.choices[0].message.tool_calls, most=1)


def test_openai_tool_choice_none_answers_in_text(oai):
    r = oai.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=16
    )
    choice = r.choices[0]
    assert choice.message.tool_calls is None
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")


def test_openai_tool_choice_auto_is_text_or_valid_calls(oai):
    for seed in (1, 2, 3, 4):
        r = oai.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, temperature=1.0, seed=seed, max_tokens=120
        )
        choice = r.choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            assert choice.message.content is None
            check_calls(choice.message.tool_calls)
        else:
            # A text answer: calls are recognised when the answer opens with one, so text that
            # mentions the call syntax later stays text.
            assert choice.message.content
            assert not choice.message.content.lstrip().startswith("<tool_call>")
            assert choice.finish_reason in ("stop", "length")


def test_openai_streamed_tool_calls_assemble(oai):
    # Seeded, as the other sampled tests here: a rare unseeded draw of the 135M model (none of
    # 40 tried by hand, one CI run) writes calls longer than max_tokens, a correct 400 that is
    # not what this tests.
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=150,
        seed=1,
        stream=True,
    )
    calls = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if d.id:
                    assert call["id"] is None, "the id comes once, in the call's first piece"
                    call["id"] = d.id
                if d.function and d.function.name:
                    call["name"] = d.function.name
                if d.function and d.function.arguments:
                    call["arguments"] += d.function.arguments
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert calls and sorted(calls) == list(range(len(calls)))
    for call in calls.values():
        assert call["id"].startswith("call_")
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])


def test_openai_tool_results_feed_back(oai):
    first = oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=100,
    )
    call = first.choices[0].message.tool_calls[0]
    messages = ASK + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"},
    ]
    r = oai.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, tool_choice="none", max_tokens=24
    )
    assert r.choices[0].message.content
    # The call and the tool's answer reached the prompt: it is longer than the question alone
    # (tool_choice "none" leaves the tool definitions out of both).
    alone = oai.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=1
    )
    assert r.usage.prompt_tokens > alone.usage.prompt_tokens + 10


# ---------- Ollama ----------


def test_ollama_format_schema(oll):
    r = oll.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a made-up person as JSON."}],
        format=PERSON,
        options={"num_predict": 120},
    )
    jsonschema.validate(json.loads(r.message.content), PERSON)


def test_ollama_format_json_generate(oll):
    r = oll.generate(
        model=MODEL, prompt="A JSON object about dogs:", format="json", options={"num_predict": 60}
    )
    assert isinstance(json.loads(r.response), dict)


def test_ollama_tools(oll):
    def get_weather(city: str, unit: str) -> str:
        """Current weather in a city.

        Args:
          city: the city
          unit: celsius or fahrenheit
        """
        return "sunny"

    # Ollama has no tool_choice: the model chooses. Check whatever it does is well formed.
    for seed in (1, 2, 3):
        r = oll.chat(
            model=MODEL,
            messages=ASK,
            tools=[get_weather, TIME],
            options={"num_predict": 120, "seed": seed, "temperature": 1.0},
        )
        if r.message.tool_calls:
            for c in r.message.tool_calls:
                assert c.function.name in ("get_weather", "get_time")
                args = dict(c.function.arguments)
                if c.function.name == "get_time":
                    jsonschema.validate(args, SCHEMAS["get_time"])
                else:
                    assert isinstance(args.get("city"), str)
        else:
            assert r.message.content
