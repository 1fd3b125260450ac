"""API keys with the official clients, against a Hearth started in required mode
(`HEARTH__AUTH__MODE=required`), with a key made by `hearth key create`:

    HEARTH_KEYS_URL=http://127.0.0.1:PORT HEARTH_API_KEY=hearth_… HEARTH_MODEL=smollm2:135m \
        pytest crates/hearth-server/tests/clients/test_keys.py

ASVS 5.0 8.2.1 / 8.3.1: without a valid key both APIs answer 401; with one, the clients work.
Skipped unless HEARTH_KEYS_URL and HEARTH_API_KEY are set.
"""

import os

import pytest

URL = os.environ.get("HEARTH_KEYS_URL", "").rstrip("/")
KEY = os.environ.get("HEARTH_API_KEY", "")
MODEL = os.environ.get("HEARTH_MODEL", "smollm2:135m")
PROMPT = [{"role": "user", "content": "Say hello in one short sentence."}]

pytestmark = pytest.mark.skipif(
    not (URL and KEY), reason="HEARTH_KEYS_URL and HEARTH_API_KEY are not set"
)


def test_openai_with_a_key_works_and_without_is_401():
    import openai

    ok = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0)
    r = ok.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=8, temperature=0)
    assert r.choices[0].message.content
    for bad in ["not-needed", KEY[:-4] + "AAAA"]:
        c = openai.OpenAI(base_url=URL + "/v1", api_key=bad, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as e:
            c.models.list()
        assert e.value.status_code == 401


def test_ollama_with_a_key_works_and_without_is_401():
    import ollama

    ok = ollama.Client(host=URL, headers={"Authorization": "Bearer " + KEY})
    r = ok.chat(model=MODEL, messages=PROMPT, options={"num_predict": 8, "temperature": 0})
    assert r.message.content
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=URL).list()
    assert e.value.status_code == 401
