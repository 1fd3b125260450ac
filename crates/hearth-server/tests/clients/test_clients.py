"""Client compatibility: the official `openai` and `ollama` Python packages against a running Hearth.

    pip install openai ollama pytest
    HEARTH_URL=http://127.0.0.1:11434 HEARTH_MODEL=smollm2:135m \
        pytest crates/hearth-server/tests/clients/test_clients.py

HEARTH_URL is the server's base URL (no /v1); HEARTH_MODEL a model it serves (installed: the
management tests pull it again, expecting no download); HEARTH_TEST_MODEL the path of that model's
GGUF file on this machine (the create/copy/delete tests upload it; they skip without it); HEARTH_EMBED_MODEL
an embedding model (default all-minilm:l6-v2; its tests skip when the server lists no such model).
Without HEARTH_URL every test is skipped. The tests assert shapes and non-empty content, never the text itself, so
they hold for any model (and for the scripted stand-in `examples/scripted_server.rs`).
"""

import base64
import hashlib
import json
import math
import os
import struct
import urllib.request
from datetime import datetime

import pytest

URL = os.environ.get("HEARTH_URL", "").rstrip("/")
MODEL = os.environ.get("HEARTH_MODEL", "smollm2:135m")
EMBED_MODEL = os.environ.get("HEARTH_EMBED_MODEL", "all-minilm:l6-v2")
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


def test_openai_chat_logprobs(oai):
    r = oai.chat.completions.create(
        model=MODEL, messages=PROMPT, max_tokens=MAX, temperature=0, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    assert content
    for t in content:
        assert t.logprob <= 0
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token
        assert len(t.top_logprobs) == 3
        alts = [a.logprob for a in t.top_logprobs]
        assert alts == sorted(alts, reverse=True)
        # Greedy: the chosen token is at least as likely as the third alternative.
        assert t.logprob >= alts[2]
    plain = oai.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=1)
    assert plain.choices[0].logprobs is None


def test_openai_chat_logprobs_streaming(oai):
    stream = oai.chat.completions.create(
        model=MODEL, messages=PROMPT, max_tokens=MAX, temperature=0, logprobs=True, top_logprobs=2, stream=True
    )
    tokens = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert tokens
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)


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
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=PROMPT, n=9)
    assert e.value.body["param"] == "n"


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
    assert r.capabilities == ["completion"]


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


# ---------- embeddings ----------

# all-MiniLM-L6-v2's cosine for this pair, computed with sentence-transformers.
PAIR = ["A man is eating food.", "A man is eating a piece of bread."]
PAIR_COSINE = 0.7553


@pytest.fixture(scope="module")
def embed_model():
    with urllib.request.urlopen(URL + "/api/tags") as r:
        names = [m["name"] for m in json.load(r)["models"]]
    if EMBED_MODEL not in names:
        pytest.skip(f"the server lists no {EMBED_MODEL}")
    return EMBED_MODEL


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def check_pair(vectors):
    assert len(vectors) == 2
    assert len(vectors[0]) == len(vectors[1]) == 384
    for v in vectors:
        assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4
    assert abs(cosine(*vectors) - PAIR_COSINE) <= 0.001


def test_openai_embeddings_float(oai, embed_model):
    r = oai.embeddings.create(model=embed_model, input=PAIR, encoding_format="float")
    assert r.object == "list"
    assert r.model == embed_model
    assert [d.index for d in r.data] == [0, 1]
    assert all(d.object == "embedding" for d in r.data)
    assert r.usage.prompt_tokens == r.usage.total_tokens == 8 + 11
    check_pair([d.embedding for d in r.data])


def test_openai_embeddings_base64(oai, embed_model):
    # Asked for explicitly, the client hands the base64 text back as is.
    r = oai.embeddings.create(model=embed_model, input=PAIR, encoding_format="base64")
    raw = [base64.b64decode(d.embedding) for d in r.data]
    vectors = [list(struct.unpack(f"<{len(b) // 4}f", b)) for b in raw]
    check_pair(vectors)
    floats = oai.embeddings.create(model=embed_model, input=PAIR, encoding_format="float")
    for v, d in zip(vectors, floats.data):
        assert v == [struct.unpack("<f", struct.pack("<f", x))[0] for x in d.embedding]


def test_openai_embeddings_default_is_decoded_base64(oai, embed_model):
    # Without encoding_format the client asks for base64 and decodes it itself.
    r = oai.embeddings.create(model=embed_model, input=PAIR)
    check_pair([d.embedding for d in r.data])
    one = oai.embeddings.create(model=embed_model, input=PAIR[0], dimensions=32)
    assert len(one.data) == 1
    assert len(one.data[0].embedding) == 32


def test_openai_embedding_errors(oai, embed_model):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model=embed_model, input=["fine", "word " * 600])
    assert "input 1 is" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model=MODEL, input="x")
    assert "not an embedding model" in str(e.value)


def test_ollama_embed(oll, embed_model):
    r = oll.embed(model=embed_model, input=PAIR)
    assert r.model == embed_model
    check_pair(r.embeddings)
    assert r.prompt_eval_count == 8 + 11
    assert r.total_duration > 0
    # Over-long input is truncated by default.
    long = oll.embed(model=embed_model, input="word " * 600)
    assert len(long.embeddings) == 1
    assert long.prompt_eval_count == 256


def test_ollama_show_embedding_model(oll, embed_model):
    assert oll.show(embed_model).capabilities == ["embedding"]


def test_ollama_embed_errors(oll, embed_model):
    import ollama

    with pytest.raises(ollama.ResponseError) as e:
        oll.embed(model=embed_model, input="word " * 600, truncate=False)
    assert e.value.status_code == 400
    with pytest.raises(ollama.ResponseError) as e:
        oll.embed(model="no-such-model:0b", input="x")
    assert e.value.status_code == 404


def test_ollama_embeddings_legacy(oll, embed_model):
    a = oll.embeddings(model=embed_model, prompt=PAIR[0]).embedding
    b = oll.embeddings(model=embed_model, prompt=PAIR[1]).embedding
    check_pair([a, b])


# ---------- ollama model management ----------

MODEL_FILE = os.environ.get("HEARTH_TEST_MODEL", "")


def tags(oll):
    return {m.model: m for m in oll.list().models}


def test_ollama_pull_installed_model_streams_progress(oll):
    parts = list(oll.pull(MODEL, stream=True))
    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    files = [p for p in parts if p.digest]
    assert files, statuses
    for p in files:
        assert p.digest.startswith("sha256:") and len(p.digest) == 71
        assert p.status == "pulling " + p.digest[7:19]
    last = files[-1]
    assert last.total and last.completed == last.total
    # What was pulled is what the server lists.
    listed = tags(oll)[MODEL]
    assert listed.digest == last.digest[7:]
    assert listed.size == last.total
    # Not streamed: one final object.
    assert oll.pull(MODEL).status == "success"


def test_ollama_pull_unknown_model_is_an_error(oll):
    import ollama

    with pytest.raises(ollama.ResponseError) as e:
        list(oll.pull("no-such-model:0b", stream=True))
    assert "no-such-model:0b" in str(e.value)
    with pytest.raises(ollama.ResponseError) as e:
        oll.pull("no-such-model:0b")
    assert e.value.status_code == 404


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@pytest.mark.skipif(not MODEL_FILE, reason="HEARTH_TEST_MODEL is not set: no GGUF to upload")
def test_ollama_create_show_copy_delete(oll):
    import ollama

    created, copied = "hearth-client-test:created", "hearth-client-test:copy"
    digest = oll.create_blob(MODEL_FILE)
    assert digest == file_digest(MODEL_FILE)
    try:
        parts = list(
            oll.create(
                model=created,
                files={"model.gguf": digest},
                system="You are terse.",
                parameters={"temperature": 0.1, "stop": ["<x>"]},
                stream=True,
            )
        )
        assert [p.status for p in parts][-2:] == ["writing manifest", "success"]
        assert any(digest in (p.status or "") for p in parts)

        r = oll.show(created)
        assert r.details.family == "llama"
        assert r.details.format == "gguf"
        assert "completion" in r.capabilities
        assert r.template, "the GGUF's own chat template"
        assert 'SYSTEM """You are terse."""' in r.modelfile
        params = [line.split(None, 1) for line in r.parameters.splitlines()]
        assert params == [["stop", '"<x>"'], ["temperature", "0.1"]]
        assert tags(oll)[created].digest == digest[7:]

        assert oll.copy(created, copied).status == "success"
        listed = tags(oll)
        assert listed[copied].digest == listed[created].digest
        assert listed[copied].size == os.path.getsize(MODEL_FILE)
        # The copy is a working model.
        out = oll.generate(model=copied, prompt="Hello", options={"num_predict": 4})
        assert out.done and out.eval_count > 0

        with pytest.raises(ollama.ResponseError) as e:
            oll.copy("no-such-model:0b", "hearth-client-test:x")
        assert e.value.status_code == 404
    finally:
        for name in (copied, created):
            try:
                oll.delete(name)
            except ollama.ResponseError:
                pass
    listed = tags(oll)
    assert created not in listed and copied not in listed
    assert MODEL in listed, "the model the blob came from is untouched"
    with pytest.raises(ollama.ResponseError) as e:
        oll.delete(created)
    assert e.value.status_code == 404
