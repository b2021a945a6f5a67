#!/usr/bin/env python3
"""Tokenizer reference fixtures: llama.cpp's token ids for AICC's GGUF tokenizer test.

Writes tests/fixtures/tokenizer/<model>.jsonl, one JSON object a line:

    {"text": "...", "parse_special": false, "ids": [9707, 1879]}

`ids` are what llama.cpp's own tokenizer (llama-tokenize, the peer build of
scripts/llama-cpp, llama.cpp b11434) makes of `text`, read from the model's
GGUF, with no BOS/EOS added. parse_special false: "<|im_start|>" etc. are
plain text; true: they become their control tokens (ChatML prompts).

The lines: ~150 English and ~150 Korean lines drawn deterministically from the
shared data (../shared/data: banking77, clinc150, parakqc, demo-bank), ~50
hand-written edge cases, ~12 ChatML lines with parse_special true. Output is
deterministic: rerun after a peer or model change, and commit the result.

Rerun (python3 stdlib only; builds llama.cpp first if needed, ~20 min on 2 cores):

    python3 scripts/reference/llama_tokenize_fixture.py
    python3 scripts/reference/llama_tokenize_fixture.py --model qwen2.5-coder-1.5b-instruct \\
        --gguf /path/to/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf

Options: --model NAME (repeatable; default both generators of
models/manifest.toml), --gguf PATH (with one --model; default
${AICC_MODEL_DIR:-~/.cache/aicc/models}/NAME/FILE), --llama-tokenize PATH
(default: `scripts/llama-cpp bin llama-tokenize`), --data DIR (default
../shared/data from the project root), --out DIR (default
tests/fixtures/tokenizer).

llama-tokenize is run once per line as
    llama-tokenize -m GGUF -f TEXTFILE --ids --no-bos --no-escape --log-disable [--no-parse-special]
-f reads the file's bytes verbatim (leading/trailing spaces and newlines kept);
--no-escape stops it from turning a literal backslash-n into a newline;
parse_special is on by default in llama-tokenize, hence --no-parse-special.
"""
import argparse
import concurrent.futures
import csv
import json
import os
import pathlib
import subprocess
import sys
import struct
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ["qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct"]

# Known answers: a fixture that disagrees means llama-tokenize was misused.
EXPECT = {
    "qwen2.5-coder-1.5b-instruct": {
        ("Hello world", False): [9707, 1879],
        ("<|im_start|>", True): [151644],
        ("<|im_end|>", True): [151645],
    },
    "smollm2-135m-instruct": {
        ("<|im_start|>", True): [1],
        ("<|im_end|>", True): [2],
        ("<|endoftext|>", True): [0],
    },
}

EDGE_CASES = [
    "Hello world",
    " Hello world",
    "Hello world ",
    "  two leading spaces",
    "two trailing spaces  ",
    "double  spaces  inside",
    "   ",
    " ",
    "a",
    "line one\nline two",
    "paragraph one\n\nparagraph two",
    "\n",
    "\n\n",
    "\n\n\n leading newlines",
    "ends with a newline\n",
    "windows\r\nline end",
    "\tTab\tseparated\tvalues",
    "mixed \t \n whitespace",
    "1234567",
    "3.5%",
    "₩1,000,000",
    "1,000,000원을 이체했어요",
    "$1,234.56 or €99.90",
    "2024-01-31 14:05:59",
    "010-1234-5678",
    "계좌번호 110-123-456789",
    "emoji 😀👍🏽🇰🇷 ❤️",
    "카드 PIN 번호",
    "OTP 인증번호 6자리를 입력하세요",
    "I'm", "don't", "it's John's card", "I'VE, WE'LL, THEY'D, she's",
    "?!?!... --- !!! ~~~ ***",
    "https://www.example.com/path/to?q=1&x=y#frag",
    "hong.gildong+test@example.co.kr",
    "「안내」『중요』【공지】 、。・",
    "ㅋㅋㅋ",
    "ㅠㅠ ㅎㅎ ㄱㄴㄷ",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "naïve café résumé",
    "日本語と中文の混合テキスト",
    "CamelCaseWords and snake_case_words",
    "C:\\Users\\name\\file.txt and a literal \\n",
    "x²+y²=z² ½ ①②③",
    "zero\u200bwidth space",
    "decomposed \u1112\u1161\u11ab\u1100\u1173\u11af",
    "<|im_start|>user not parsed as special",
    "a <tool_call> tag is user-defined, matched even as plain text",
    "    def f(x):\n        return x + 1\n",
]

CHATML = [
    "<|im_start|>user\n안녕하세요<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is my balance?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\n당신은 한빛은행 상담원입니다.<|im_end|>\n",
    "<|im_start|>user\n카드 PIN 번호를 잊어버렸어요<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>assistant\nYour card was sent on Monday.<|im_end|>\n<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|><|im_end|>",
    "text before<|im_start|>user\nafter",
    " <|im_start|> spaced <|im_end|> ",
    "<|im_start|>user\n<tool_call>\n{\"name\": \"balance\"}\n</tool_call><|im_end|>\n",
]


def log(msg):
    print(f"llama_tokenize_fixture: {msg}", file=sys.stderr, flush=True)


def pick(rows, count):
    """count rows spread evenly over rows (deterministic), first occurrence of each text."""
    seen, out = set(), []
    if not rows:
        return out
    step = max(1, len(rows) // (count * 2))
    for i in range(0, len(rows), step):
        t = rows[i]
        if t not in seen:
            seen.add(t)
            out.append(t)
    stride = len(out) / count
    return [out[int(j * stride)] for j in range(min(count, len(out)))]


def read_csv(path, column, delimiter=",", where=None):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
    return [r[column] for r in rows if where is None or where(r)]


def valid(text):
    if not isinstance(text, str) or not text or "\x00" in text:
        return False
    try:
        text.encode("utf-8")  # no lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def lines(data):
    d = pathlib.Path(data)
    en = (pick(read_csv(d / "banking77/train.csv", "text"), 55)
          + pick(read_csv(d / "clinc150/train.csv", "text"), 55)
          + pick(read_csv(d / "demo-bank/faq.csv", "question", where=lambda r: r["language"] == "en"), 20)
          + pick(read_csv(d / "demo-bank/faq.csv", "answer", where=lambda r: r["language"] == "en"), 20))
    ko = (pick(read_csv(d / "parakqc/dev.tsv", "text", delimiter="\t"), 60)
          + pick(read_csv(d / "demo-bank/queries_ko_dev.csv", "text"), 50)
          + pick(read_csv(d / "demo-bank/faq.csv", "question", where=lambda r: r["language"] == "ko"), 20)
          + pick(read_csv(d / "demo-bank/faq.csv", "answer", where=lambda r: r["language"] == "ko"), 20))
    out, seen = [], set()
    for text, special in ([(t, False) for t in en + ko + EDGE_CASES] + [(t, True) for t in CHATML]):
        if valid(text) and (text, special) not in seen:
            seen.add((text, special))
            out.append((text, special))
    return out


def gguf_vocab(path):
    """(tokens, token_types) from a GGUF's tokenizer.ggml.* keys (header only, stdlib)."""
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as f:
        def read(fmt):
            fmt = "<" + fmt
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string():
            return f.read(read("Q")).decode("utf-8")

        def value(t):
            if t == 8:
                return string()
            if t == 9:
                et, n = read("I"), read("Q")
                if et in scalar:
                    fmt = scalar[et]
                    size = struct.calcsize(fmt)
                    return list(struct.unpack(f"<{n}{fmt}", f.read(n * size)))
                return [value(et) for _ in range(n)]
            return read(scalar[t])

        if f.read(4) != b"GGUF":
            sys.exit(f"llama_tokenize_fixture: {path} is not a GGUF file")
        version, _tensors, n_kv = read("I"), read("Q"), read("Q")
        if version < 2:
            sys.exit(f"llama_tokenize_fixture: GGUF v{version} is too old")
        kv = {}
        for _ in range(n_kv):
            key, t = string(), read("I")
            kv[key] = value(t)
    return kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]


def byte_decoder():
    """GPT-2's byte-level alphabet, reversed: token character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def detokenize(ids, tokens, types, dec):
    """Bytes of ids: normal tokens through the byte-level alphabet, control
    (3) and user-defined (4) tokens as their text."""
    out = bytearray()
    for i in ids:
        if types[i] == 1:
            out += bytes(dec[c] for c in tokens[i])
        else:
            out += tokens[i].encode("utf-8")
    return bytes(out)


def manifest_gguf(model):
    with open(ROOT / "models/manifest.toml", "rb") as f:
        for m in tomllib.load(f).get("model", []):
            if m.get("name") == model:
                for file in m.get("file", []):
                    if file["path"].endswith(".gguf"):
                        base = os.environ.get("AICC_MODEL_DIR") or os.path.expanduser("~/.cache/aicc/models")
                        return pathlib.Path(base) / model / file["path"]
    sys.exit(f"llama_tokenize_fixture: no GGUF for {model} in models/manifest.toml")


def tokenize(binary, gguf, text, special, tmpdir, i):
    path = pathlib.Path(tmpdir) / f"line{i}.txt"
    path.write_bytes(text.encode("utf-8"))
    argv = [binary, "-m", str(gguf), "-f", str(path), "--ids", "--no-bos", "--no-escape", "--log-disable"]
    if not special:
        argv.append("--no-parse-special")
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
    path.unlink()
    if p.returncode != 0:
        raise RuntimeError(f"llama-tokenize failed ({p.returncode}) on {text!r}: {p.stderr.decode(errors='replace')[-2000:]}")
    out = [l for l in p.stdout.decode().splitlines() if l.startswith("[")]
    if len(out) != 1:
        raise RuntimeError(f"unexpected llama-tokenize output on {text!r}: {p.stdout!r}")
    ids = json.loads(out[0])
    if not all(isinstance(x, int) for x in ids):
        raise RuntimeError(f"non-integer ids for {text!r}: {ids}")
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", choices=MODELS)
    ap.add_argument("--gguf")
    ap.add_argument("--llama-tokenize")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/tokenizer"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    models = args.model or MODELS
    if args.gguf and len(models) != 1:
        ap.error("--gguf needs exactly one --model")

    binary = args.llama_tokenize or subprocess.run(
        [str(ROOT / "scripts/llama-cpp"), "bin", "llama-tokenize"],
        check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    todo = lines(args.data)
    log(f"{len(todo)} lines ({sum(1 for _, s in todo if s)} with parse_special)")

    os.makedirs(args.out, exist_ok=True)
    for model in models:
        gguf = pathlib.Path(args.gguf) if args.gguf else manifest_gguf(model)
        if not gguf.is_file():
            sys.exit(f"llama_tokenize_fixture: no GGUF at {gguf} (aicc models pull {model}, or --gguf)")
        log(f"{model}: tokenizing with {binary} on {gguf}")
        with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            ids = list(pool.map(lambda a: tokenize(binary, gguf, a[1][0], a[1][1], tmp, a[0]), enumerate(todo)))
        for (text, special), want in EXPECT.get(model, {}).items():
            got = tokenize(binary, gguf, text, special, tempfile.gettempdir(), f"check{os.getpid()}")
            if got != want:
                sys.exit(f"llama_tokenize_fixture: {model}: {text!r} (parse_special={special}) gave {got}, expected {want}")
        # Keep only lines that decode back to themselves (what the Rust test asks).
        tokens, types = gguf_vocab(gguf)
        dec = byte_decoder()
        keep = []
        for (text, special), row in zip(todo, ids):
            if detokenize(row, tokens, types, dec) == text.encode("utf-8"):
                keep.append(((text, special), row))
            else:
                log(f"{model}: dropped {text!r}: its ids do not decode back to it")
        dest = pathlib.Path(args.out) / f"{model}.jsonl"
        tmp_dest = dest.with_suffix(".jsonl.tmp")
        with open(tmp_dest, "w", encoding="utf-8", newline="\n") as f:
            for (text, special), row in keep:
                f.write(json.dumps({"text": text, "parse_special": special, "ids": row}, ensure_ascii=False) + "\n")
        os.replace(tmp_dest, dest)
        log(f"{model}: wrote {dest} ({dest.stat().st_size} bytes, {len(keep)} lines, {sum(len(r) for _, r in keep)} ids)")


if __name__ == "__main__":
    main()
