#!/usr/bin/python3
"""render-templates.py - expected chat-template renderings, from Python's jinja2.

Renders every tests/data/templates/*.jinja and the tokenizer.chat_template of
../shared/vocab/ggml-vocab-{llama3,qwen3}.gguf on a few conversations, with the
environment Hugging Face's apply_chat_template builds (sandboxed, trim_blocks,
lstrip_blocks, loop controls, tojson keeping non-ASCII, raise_exception and
strftime_now globals; tools and documents passed as None), and writes them to
tests/data/templates/renders.json, which tests/test_jinja.c checks attnd's
renderer against byte for byte. A template that raises records the message.

usage: /usr/bin/python3 tests/ref/render-templates.py [SHARED_DIR]   (python3-jinja2)
"""
import datetime
import glob
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.path.insert(0, os.path.dirname(__file__))
from ref_forward import load_gguf_meta  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared")
NOW = datetime.datetime(2026, 1, 15, 12, 0, 0)  # the tests pass the same instant


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)
    return env


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CASES = {
    "chat": ([SYSTEM, {"role": "user", "content": "Hello!"},
              {"role": "assistant", "content": "Hi, how can I help?"},
              {"role": "user", "content": "What is 2+2?"}], True),
    "no_system": ([{"role": "user", "content": "Hello!"},
                   {"role": "assistant", "content": "Hi there."},
                   {"role": "user", "content": "Bye."}], True),
    "single": ([{"role": "user", "content": "One question"}], False),
    "assistant_last": ([{"role": "user", "content": "Say hi"},
                        {"role": "assistant", "content": "hi"}], False),
    "tricky": ([SYSTEM, {"role": "user", "content": "  Ünïcödé \"quotes\" 'single' {{ not a tag }} {% neither %}\n\tnew\nlines  "},
                {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nOK: café, 日本語, 🎉"},
                {"role": "user", "content": "again"}], True),
}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Zürich"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}]
TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}
BY_MODEL = {  # what each family's tokenizer_config says
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "qwen": {"bos_token": "", "eos_token": "<|im_end|>"},
    "gemma": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "deepseek": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
}


def tokens_for(name):
    n = name.lower()
    if "llama-3" in n or "llama3" in n or "hermes-3" in n or "firefunction" in n or "functionary" in n:
        return BY_MODEL["llama3"]
    if "qwen" in n and "deepseek" not in n:
        return BY_MODEL["qwen"]
    if "gemma" in n:
        return BY_MODEL["gemma"]
    if "deepseek" in n:
        return BY_MODEL["deepseek"]
    return TOKENS


def main():
    env = environment()
    sources = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/data/templates/*.jinja"))):
        sources[os.path.basename(path)] = open(path, encoding="utf-8").read()
    for v in ("llama3", "qwen3"):
        meta = load_gguf_meta(os.path.join(SHARED, f"vocab/ggml-vocab-{v}.gguf"))
        sources[f"vocab:ggml-vocab-{v}.gguf"] = meta["tokenizer.chat_template"]
    out = []
    for name, src in sources.items():
        tmpl = env.from_string(src)
        cases = list(CASES.items()) + [("tools", ([{"role": "user", "content": "Weather in Paris?"}], True))]
        for case, (messages, agp) in cases:
            vars = {"messages": messages, "add_generation_prompt": agp,
                    "tools": TOOLS if case == "tools" else None, "documents": None,
                    **tokens_for(name)}
            entry = {"template": name, "case": case, "vars": vars}
            try:
                entry["output"] = tmpl.render(**vars)
            except Exception as e:
                # raise_exception raises TemplateError itself: its message is
                # exact; any other failure (UndefinedError, TypeError from
                # iterating tools=None) only has to fail
                if type(e) is not jinja2.exceptions.TemplateError:
                    entry["error_kind"] = type(e).__name__
                entry["error"] = str(e)
            out.append(entry)
    path = os.path.join(ROOT, "tests/data/templates/renders.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "now": NOW.isoformat(), "renders": out}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{path}: {len(out)} renderings of {len(sources)} templates "
          f"({sum('error' in e for e in out)} raise)")


if __name__ == "__main__":
    main()
