"""The rest of the request surface through the official clients against a running Hearth: `n`,
`seed`, `stop`, `max_tokens` / `max_completion_tokens`, penalties, `logit_bias`, `user`, and
over-long prompts (refused unless the request opts into truncation).

Same environment as test_clients.py (HEARTH_URL, HEARTH_MODEL). Expected values are properties
any deterministic model has (same seed → same text, a banned token never appears), not texts.
"""

import json
import os
import re
import urllib.error
import urllib.request

import pytest

URL = os.environ.get("HEARTH_URL", "").rstrip("/")
MODEL = os.environ.get("HEARTH_MODEL", "smollm2:135m")
MAX = 12
PROMPT = [{"role": "user", "content": "Write one sentence about the sea."}]

pytestmark = pytest.mark.skipif(not URL, reason="HEARTH_URL is not set: no server to test")


@pytest.fixture(scope="module")
def oai():
    import openai

    return openai.OpenAI(base_url=URL + "/v1", api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def oll():
    import ollama

    return ollama.Client(host=URL)


def post(path, body, url=URL):
    """(status, JSON body) of a POST, errors included."""
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def metric(name):
    with urllib.request.urlopen(URL + "/metrics") as r:
        text = r.read().decode()
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    assert m, f"{name} is not in /metrics"
    return int(m.group(1))


# ---------- n ----------


def test_n_choices_share_one_prompt_computation(oai):
    # A prompt no earlier request has, so only the choices can share it.
    messages = [{"role": "user", "content": f"List three colours. (run {os.getpid()})"}]
    before = metric("hearth_prompt_tokens_cached_total")
    r = oai.chat.completions.create(
        model=MODEL, messages=messages, n=3, seed=11, temperature=1.0, max_tokens=MAX
    )
    cached = metric("hearth_prompt_tokens_cached_total") - before
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.content and c.finish_reason in ("stop", "length") for c in r.choices)
    prompt = r.usage.prompt_tokens
    assert r.usage.completion_tokens <= 3 * MAX
    assert r.usage.total_tokens == prompt + r.usage.completion_tokens
    # Choice 0 may start from an earlier request's cached prefix (the chat template's default
    # system prompt); choices 1 and 2 copied the prompt computed for choice 0 (all but its
    # last token, whose logits each choice needs).
    details = r.usage.prompt_tokens_details
    first = details.cached_tokens if details else 0
    assert cached == first + 2 * (prompt - 1)
    # Each choice is its own draw (seeds seed + i; the server-side test checks the seeds): with
    # temperature 1 the three answers are not all the same. Exact texts are not compared across
    # requests: a choice computed in a batch may differ in the last bits from one computed alone.
    assert len({c.message.content for c in r.choices}) > 1


def test_n_choices_stream_by_index(oai):
    # Greedy: both requests give the same answers, whatever the seeds.
    whole = oai.chat.completions.create(
        model=MODEL, messages=PROMPT, n=2, seed=3, temperature=0, max_tokens=MAX
    )
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        n=2,
        seed=3,
        temperature=0,
        max_tokens=MAX,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, finishes, usage = ["", ""], [[], []], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finishes[c.index].append(c.finish_reason)
    assert texts == [c.message.content for c in whole.choices]
    assert finishes == [[c.finish_reason] for c in whole.choices]
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_n_on_legacy_completions(oai):
    r = oai.completions.create(model=MODEL, prompt="The sea is", n=2, seed=5, max_tokens=MAX)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.text for c in r.choices)
    assert r.usage.completion_tokens == sum(
        oai.completions.create(model=MODEL, prompt="The sea is", seed=5 + i, max_tokens=MAX)
        .usage.completion_tokens
        for i in range(2)
    )


def test_n_beyond_the_cap_is_400(oai):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=PROMPT, n=9, max_tokens=1)
    assert "n: must be between 1 and 8 (got 9)" in str(e.value)
    assert e.value.body["param"] == "n"


# ---------- seed, stop, max tokens, penalties, user ----------


def test_same_seed_same_text_on_both_families(oai, oll):
    def openai_text(seed):
        r = oai.chat.completions.create(
            model=MODEL, messages=PROMPT, seed=seed, temperature=1.2, max_tokens=MAX
        )
        return r.choices[0].message.content

    assert openai_text(7) == openai_text(7)
    assert len({openai_text(s) for s in (1, 2, 3, 4)}) > 1

    def ollama_text(seed):
        r = oll.chat(
            model=MODEL,
            messages=PROMPT,
            options={"seed": seed, "temperature": 1.2, "num_predict": MAX},
        )
        return r.message.content

    assert ollama_text(7) == ollama_text(7)
    assert len({ollama_text(s) for s in (1, 2, 3, 4)}) > 1


def test_stop_as_string_or_list(oai, oll):
    full = oai.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=MAX, temperature=0)
    text = full.choices[0].text
    cut = text[1:3] if len(text) > 3 else text[-1]
    for stop in (cut, [cut, "never-seen-stop"]):
        r = oai.completions.create(
            model=MODEL, prompt="1, 2, 3, 4,", max_tokens=MAX, temperature=0, stop=stop
        )
        assert r.choices[0].text == text[: text.index(cut)]
        assert r.choices[0].finish_reason == "stop"
    g = oll.generate(
        model=MODEL,
        prompt="1, 2, 3, 4,",
        raw=True,
        options={"temperature": 0, "repeat_penalty": 1.0, "num_predict": MAX, "stop": [cut]},
    )
    assert g.response == text[: text.index(cut)]
    assert g.done_reason == "stop"


def test_max_completion_tokens_wins_over_max_tokens(oai):
    r = oai.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        max_tokens=2,
        max_completion_tokens=5,
        temperature=0,
    )
    assert r.usage.completion_tokens == 5
    assert r.choices[0].finish_reason == "length"
    r = oai.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=2, temperature=0)
    assert r.usage.completion_tokens == 2


def test_penalties_change_greedy_text(oai, oll):
    prompt = "Repeat after me: apple apple apple apple apple apple"

    def text(**kw):
        r = oai.completions.create(model=MODEL, prompt=prompt, max_tokens=16, temperature=0, **kw)
        return r.choices[0].text

    plain = text()
    assert text(frequency_penalty=2.0) != plain
    assert text(presence_penalty=2.0) != plain

    def ol(**options):
        r = oll.generate(
            model=MODEL, prompt=prompt, raw=True, options={"temperature": 0, "num_predict": 16,
                                                          "repeat_penalty": 1.0, **options}
        )
        return r.response

    assert ol() == plain
    assert ol(frequency_penalty=2.0) == text(frequency_penalty=2.0)


def test_user_is_accepted(oai):
    r = oai.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=2, user="alice")
    assert r.choices[0].message.content


# ---------- logit_bias ----------


def test_logit_bias_bans_and_forces_tokens(oai):
    def greedy(bias):
        return oai.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=1, temperature=0,
            logit_bias=bias,
        ).choices[0].text

    # +100 makes a token the answer: three ids give three different texts, none the plain one.
    plain = greedy({})
    forced = {i: greedy({str(i): 100}) for i in (1000, 2000, 3000)}
    assert len(set(forced.values())) == 3
    # Each entry applies to its own id: -100 beside +100 leaves the +100 one winning.
    assert greedy({"1000": -100, "2000": 100}) == forced[2000]
    assert greedy({"1000": 100, "2000": -100}) == forced[1000]
    # Biases of ids the answer does not involve change nothing.
    if plain not in forced.values():
        assert greedy({"1000": -100, "2000": -100}) == plain


def test_logit_bias_errors_name_the_entry(oai):
    import openai

    for bias, message in [
        ({"abc": 1}, '"abc" is not a token id'),
        ({"5": 150}, "the bias of token 5 must be between -100 and 100 (got 150"),
        ({"99999999": 1}, "token id 99999999 is not in"),
    ]:
        with pytest.raises(openai.BadRequestError) as e:
            oai.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=1, logit_bias=bias)
        assert message in str(e.value), str(e.value)


# ---------- over-long prompts ----------

LONG = "word " * 9000


def test_overlong_prompt_is_400_unless_truncation_is_asked(oai):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        oai.completions.create(model=MODEL, prompt=LONG, max_tokens=2)
    assert "context window holds" in str(e.value)
    # Prompt + max_tokens beyond the window is refused too.
    with pytest.raises(openai.BadRequestError) as e:
        oai.completions.create(model=MODEL, prompt="hi", max_tokens=1_000_000)
    assert "max_tokens asks for 1000000 more" in str(e.value)
    # vLLM's truncate_prompt_tokens keeps the prompt's last N tokens.
    r = oai.completions.create(
        model=MODEL, prompt=LONG, max_tokens=2, extra_body={"truncate_prompt_tokens": 100}
    )
    assert r.usage.prompt_tokens == 100
    assert r.usage.completion_tokens == 2
    r = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": LONG}],
        max_tokens=2,
        extra_body={"truncate_prompt_tokens": 50},
    )
    assert r.usage.prompt_tokens == 50
    with pytest.raises(openai.BadRequestError) as e:
        oai.completions.create(
            model=MODEL, prompt="hi", max_tokens=2, extra_body={"truncate_prompt_tokens": 10**6}
        )
    assert "truncate_prompt_tokens: must be at most the context window" in str(e.value)


# Filling a context window of 8192 tokens takes minutes on a small CPU, so Ollama's truncation
# is tested on a second server whose context window is short (scripts/test.sh starts it with
# HEARTH__ENGINE__CONTEXT_LENGTH=256).
SHORT_URL = os.environ.get("HEARTH_SHORT_CONTEXT_URL", "").rstrip("/")


@pytest.mark.skipif(not SHORT_URL, reason="HEARTH_SHORT_CONTEXT_URL is not set")
def test_ollama_truncate_drops_the_oldest_messages():
    def short(path, body):
        return post(path, body, url=SHORT_URL)

    status, _ = short("/api/generate", {"model": MODEL, "prompt": "", "stream": False})
    assert status == 200
    with urllib.request.urlopen(SHORT_URL + "/api/ps") as r:
        ctx = next(m["context_length"] for m in json.load(r)["models"] if m["name"] == MODEL)
    assert ctx < 1024
    history = [{"role": "system", "content": "Answer briefly."}]
    for i in range(30):
        history.append({"role": "user", "content": f"note {i}: " + "filler " * 20})
        history.append({"role": "assistant", "content": "noted"})
    history.append({"role": "user", "content": "Say hi."})
    body = {"model": MODEL, "messages": history, "stream": False,
            "options": {"num_predict": 3, "temperature": 0}}
    status, r = short("/api/chat", body)
    assert status == 400
    assert f"context window holds {ctx} tokens" in r["error"]
    status, r = short("/api/chat", {**body, "truncate": True})
    assert status == 200, r
    assert r["done"] and r["message"]["content"]
    # It fits with room for num_predict, and no more messages went than needed: one more
    # user/assistant pair (about 40 tokens) would not have fitted.
    n = r["prompt_eval_count"]
    assert ctx - 3 - 2 * 40 < n <= ctx - 3
    # A raw prompt keeps its last tokens that fit.
    raw = {"model": MODEL, "prompt": "word " * (2 * ctx), "raw": True, "stream": False,
           "options": {"num_predict": 2}}
    assert short("/api/generate", raw)[0] == 400
    status, r = short("/api/generate", {**raw, "truncate": True})
    assert status == 200, r
    assert r["prompt_eval_count"] == ctx - 2
