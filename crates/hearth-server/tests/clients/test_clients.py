"""Client compatibility: the official `openai` and `ollama` Python packages against a running Hearth.

    pip install openai ollama pytest
    HEARTH_URL=http://127.0.0.1:11434 HEARTH_MODEL=smollm2:135m \
        pytest crates/hearth-server/tests/clients/test_clients.py

HEARTH_URL is the server's base URL (no /v1); HEARTH_MODEL a model it serves. Without HEARTH_URL
every test is skipped. The tests assert shapes and non-empty content, never the text itself, so
they hold for any model (and for the scripted stand-in `examples/scripted_server.rs`).
"""

import json
import os
import urllib.request
from datetime import datetime

import pytest

URL = os.environ.get("HEARTH_URL", "").rstrip("/")
MODEL = os.environ.get("HEARTH_MODEL", "smollm2:135m")
MAX = 16
PROMPT = [{"role": "user", "content": "Say hello in one short sentence."}]

pytestmark = pytest.mark.skipif(not URL, reason="HEARTH_URL is not set: no server to test")


@pytest.fixture(scope="module")
def oai():
    import openai

    return openai.OpenAI(base_url=URL + "/v1", api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def oll():
    import ollama

    return ollama.Client(host=URL)


# ---------- openai ----------


def test_openai_chat(oai):
    r = oai.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=MAX)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == MODEL
    assert r.created > 0
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_openai_chat_streaming(oai):
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        max_completion_tokens=MAX,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text
    assert with_choices[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens > 0


def test_openai_completion(oai):
    r = oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=MAX)
    assert r.object == "text_completion"
    assert r.choices[0].text
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0


def test_openai_completion_streaming(oai):
    chunks = list(oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=MAX, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_openai_models(oai):
    ids = [m.id for m in oai.models.list()]
    assert MODEL in ids
    m = oai.models.retrieve(MODEL)
    assert m.id == MODEL
    assert m.object == "model"


def test_openai_errors(oai):
    import openai

    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="no-such-model:0b", messages=PROMPT)
    assert "no-such-model:0b" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=MODEL, messages=PROMPT, n=2)


# ---------- ollama ----------


def test_ollama_chat(oll):
    r = oll.chat(model=MODEL, messages=PROMPT, stream=False, options={"num_predict": MAX})
    assert r.model == MODEL
    assert isinstance(r.created_at, str) and datetime.fromisoformat(r.created_at.replace("Z", "+00:00"))
    assert r.message.role == "assistant"
    assert r.message.content
    assert r.done is True
    assert r.done_reason in ("stop", "length")
    assert r.eval_count > 0
    assert r.prompt_eval_count > 0
    assert r.total_duration > 0


def test_ollama_chat_streaming(oll):
    parts = list(oll.chat(model=MODEL, messages=PROMPT, stream=True, options={"num_predict": MAX}))
    assert all(not p.done for p in parts[:-1])
    assert parts[-1].done is True
    assert parts[-1].done_reason in ("stop", "length")
    assert parts[-1].eval_count > 0
    assert "".join(p.message.content for p in parts)


def test_ollama_generate(oll):
    r = oll.generate(model=MODEL, prompt="Why is the sky blue?", stream=False, options={"num_predict": MAX})
    assert r.response
    assert r.done is True
    assert r.eval_count > 0
    parts = list(oll.generate(model=MODEL, prompt="Why is the sky blue?", stream=True, options={"num_predict": MAX}))
    assert "".join(p.response for p in parts)
    assert parts[-1].done is True


def test_ollama_load_only(oll):
    r = oll.generate(model=MODEL, prompt="")
    assert r.done is True
    assert r.done_reason == "load"


def test_ollama_errors(oll):
    import ollama

    with pytest.raises(ollama.ResponseError) as e:
        oll.chat(model="no-such-model:0b", messages=PROMPT)
    assert e.value.status_code == 404
    assert "no-such-model:0b" in e.value.error


def test_ollama_list(oll):
    models = oll.list().models
    names = [m.model for m in models]
    assert MODEL in names
    m = models[names.index(MODEL)]
    assert m.size > 0
    assert m.digest
    assert m.modified_at is not None
    assert m.details.format
    assert m.details.family
    assert m.details.quantization_level


def test_ollama_show(oll):
    r = oll.show(MODEL)
    assert r.details.format
    assert r.details.parameter_size
    assert r.modelinfo
    assert r.modelfile
    assert r.template is not None
    assert r.modified_at is not None


def test_ollama_ps(oll):
    oll.generate(model=MODEL, prompt="Hi", stream=False, options={"num_predict": 1})
    models = oll.ps().models
    loaded = [m for m in models if m.model == MODEL]
    assert loaded
    assert loaded[0].size > 0
    assert loaded[0].expires_at is not None
    assert loaded[0].context_length > 0


def test_ollama_version():
    with urllib.request.urlopen(URL + "/api/version") as r:
        assert json.load(r)["version"]
