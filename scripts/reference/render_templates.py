#!/usr/bin/env python3
"""Reference chat-template renderings, made the way transformers' apply_chat_template renders:
Jinja2 ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loopcontrols), its tojson,
raise_exception and strftime_now, special tokens passed as variables, tools=None, documents=None.

    python3 scripts/reference/render_templates.py OUT.json MODEL_DIR...
"""
import json, sys
from datetime import datetime
import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

CASES = [
    [{"role": "user", "content": "What is 2+3?"}],
    [{"role": "system", "content": "You are a careful mathematician."}, {"role": "user", "content": "Solve x^2=4."}],
    [{"role": "system", "content": "  Be brief.  \n"}, {"role": "user", "content": "Compute 12*7.\nShow work."},
     {"role": "assistant", "content": "The answer is \\boxed{84}."}, {"role": "user", "content": " And 13*7? "}],
    [{"role": "user", "content": "Ünïcödé — π ≈ 3.14159 and 数学"}, {"role": "assistant", "content": "OK"}],
]


def env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    e.filters["tojson"] = tojson
    e.globals["raise_exception"] = raise_exception
    e.globals["strftime_now"] = lambda f: datetime.now().strftime(f)
    return e


def special(cfg, k):
    v = cfg.get(k)
    return v.get("content") if isinstance(v, dict) else v


out = []
for d in sys.argv[2:]:
    cfg = json.load(open(d + "/tokenizer_config.json"))
    t = env().from_string(cfg["chat_template"])
    sp = {k: special(cfg, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    for msgs in CASES:
        for gen in (True, False):
            out.append({"model": d.rstrip("/").split("/")[-1], "messages": msgs, "add_generation_prompt": gen,
                        "expected": t.render(messages=msgs, tools=None, documents=None, add_generation_prompt=gen, **sp)})
json.dump(out, open(sys.argv[1], "w"), ensure_ascii=False, indent=1)
